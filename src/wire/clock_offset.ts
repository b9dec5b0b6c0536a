/**
 * The offset between this host's clock and the platform's, measured from the `Date` header of
 * every platform answer. Kept for `status`, the certificate-time hints and, once the platform
 * advertises the `clock_offset` feature, the heartbeat.
 */
import { type ClockOffsetReport, FEATURE_CLOCK_OFFSET } from "./contract.ts";
import type { Logger } from "../log.ts";
import { isoTime } from "../iso_time.ts";

/** Offset beyond which the agent warns (once per process): certificates start to look wrong. */
export const CLOCK_WARN_SECONDS = 60;

/** What an offset above {@linkcode CLOCK_WARN_SECONDS} risks and what to do (enroll, run, --check). */
export const CLOCK_SKEW_HINT =
  "certificates may look not yet valid or expired: fix time sync (NTP) on this host";

/** One measurement: positive seconds mean the platform's clock is ahead of this host's. */
export interface ClockMeasurement {
  seconds: number;
  measuredAt: string;
}

/**
 * Offset in whole seconds between a `Date` header and this host's clock at the middle of the
 * round trip; undefined when the header is absent or unparsable. `Date` has a resolution of one
 * second, so the result is rounded.
 */
function offsetFromDate(
  date: string | null,
  sentWallMs: number,
  receivedWallMs: number,
): number | undefined {
  if (date === null) return undefined;
  const platformMs = Date.parse(date);
  if (Number.isNaN(platformMs)) return undefined;
  // `|| 0` turns -0 into 0.
  return Math.round((platformMs - (sentWallMs + receivedWallMs) / 2) / 1000) || 0;
}

/** `612 s ahead of` / `3 min behind` style text for an offset, from the host's point of view. */
export function describeOffset(seconds: number): string {
  if (seconds === 0) return "agrees with this host";
  const abs = Math.abs(seconds);
  const span = abs < 120
    ? `${abs} s`
    : abs < 7200
    ? `${Math.round(abs / 60)} min`
    : `${Math.round(abs / 3600)} h`;
  return `is ${span} ${seconds > 0 ? "ahead of" : "behind"} this host`;
}

/** Hint for a "not yet valid" or "expired" certificate error; empty when nothing was measured. */
export function clockHint(measurement: ClockMeasurement | undefined): string {
  if (measurement === undefined) return "";
  return `; the platform's clock ${
    describeOffset(measurement.seconds)
  } (measured ${measurement.measuredAt})`;
}

let warnedThisProcess = false;

/**
 * The latest measurement of one process, shared by every platform client it makes. Warns once per
 * process when the offset exceeds {@linkcode CLOCK_WARN_SECONDS}.
 */
export class ClockOffset {
  #latest: ClockMeasurement | undefined;
  readonly #logger: Logger | undefined;

  constructor(logger?: Logger, initial?: ClockMeasurement) {
    this.#logger = logger;
    this.#latest = initial;
  }

  /** The latest measurement, if any. */
  get latest(): ClockMeasurement | undefined {
    return this.#latest;
  }

  /** Records the `Date` header of one answer. */
  observe(date: string | null, sentWallMs: number, receivedWallMs: number): void {
    const seconds = offsetFromDate(date, sentWallMs, receivedWallMs);
    if (seconds === undefined) return;
    this.#latest = { seconds, measuredAt: isoTime(receivedWallMs) };
    if (Math.abs(seconds) > CLOCK_WARN_SECONDS && !warnedThisProcess && this.#logger) {
      warnedThisProcess = true;
      this.#logger.warn(
        `The platform's clock ${describeOffset(seconds)}; ${CLOCK_SKEW_HINT}`,
        { clock_offset_seconds: seconds },
      );
    }
  }
}

/**
 * The `clock_offset` for the next heartbeat: the latest measurement `status.json` holds, only when
 * the platform's last `features` include `clock_offset` (otherwise nothing changes on the wire).
 */
export function clockOffsetReport(status: {
  platform_features?: string[];
  clock_offset?: { seconds: number; measured_at: string } | null;
}): ClockOffsetReport | undefined {
  if (!(status.platform_features ?? []).includes(FEATURE_CLOCK_OFFSET)) return undefined;
  const measured = status.clock_offset;
  if (!measured) return undefined;
  return { seconds: measured.seconds, measured_at: measured.measured_at };
}
