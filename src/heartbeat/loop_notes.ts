/** The heartbeat loop's log lines that are said once, or once per change of state. */
import { notRejectedNote, REJECTION_STATUSES } from "../wire/contract.ts";
import { failureFields, type PlatformError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { HeartbeatSchedule } from "./schedule.ts";

/** The log lines said once, or once per change of state, over the life of the loop. */
export class LoopNotes {
  readonly #logger: Logger;
  readonly #schedule: HeartbeatSchedule;
  #everSucceeded = false;
  #warnedHint = false;
  #interval: number;
  #digestOnly: boolean;
  /** Monotonic start of the first failed attempt of the current streak in this process. */
  #failingSinceMono: number | undefined;

  constructor(logger: Logger, schedule: HeartbeatSchedule, digestOnly: boolean) {
    this.#logger = logger;
    this.#schedule = schedule;
    this.#interval = schedule.intervalSeconds;
    this.#digestOnly = digestOnly;
  }

  /** Whether heartbeats go without `host` when it did not change. */
  digestOnly(now: boolean): void {
    if (now === this.#digestOnly) return;
    this.#digestOnly = now;
    this.#logger.info(
      now
        ? "Platform supports digest-only heartbeats (host_digest): host sent when changed"
        : "Platform does not advertise host_digest: host sent on every heartbeat",
    );
  }

  /** Forgets the digest-only mode without a line (the refusal said it). */
  digestRefused(): void {
    this.#digestOnly = false;
  }

  /** Takes the platform's interval hint; warns about the first bad one. */
  hint(value: unknown): void {
    const hint = this.#schedule.applyHint(value);
    if ((hint.kind === "invalid" || hint.kind === "clamped") && !this.#warnedHint) {
      this.#warnedHint = true;
      this.#logger.warn(
        hint.kind === "invalid"
          ? `Ignoring invalid next_heartbeat_seconds ${
            JSON.stringify(hint.raw) ?? String(hint.raw)
          } from the platform (expected an integer from 10 to 86400)`
          : `Clamping next_heartbeat_seconds ${hint.raw} from the platform to ${hint.seconds}`,
      );
    }
  }

  /** A failed attempt; the first of a streak is a warning. */
  failed(
    failure: PlatformError,
    beat: { startedMono: number; failingSince: string | null; retryInSeconds?: number },
  ): void {
    const { startedMono, failingSince, retryInSeconds } = beat;
    if (this.#failingSinceMono !== undefined) return;
    this.#failingSinceMono = startedMono;
    // An edge's page (or an unknown code) at a rejection status is no rejection: say so.
    const notRejected = notRejectedNote(failure, REJECTION_STATUSES);
    this.#logger.warn(
      `Heartbeats failing since ${failingSince}: ${failure.message}${notRejected}`,
      { ...failureFields(failure), retry_in_seconds: retryInSeconds },
    );
  }

  /** An accepted beat, after `recovery.from` failed ones (of this process or a previous one). */
  accepted(
    sequence: number,
    nowMono: number,
    recovery: { from: number; since: string | null; gapReported: boolean },
  ): void {
    if (recovery.from > 0) {
      const downSeconds = this.#failingSinceMono === undefined
        ? undefined
        : Math.round((nowMono - this.#failingSinceMono) / 1000);
      this.#logger.info(`Heartbeats recovered after ${recovery.from} failed attempts`, {
        failing_since: recovery.since,
        down_seconds: downSeconds,
        gap_reported: recovery.gapReported,
      });
    }
    if (!this.#everSucceeded) {
      this.#everSucceeded = true;
      this.#logger.info("First heartbeat accepted", { sequence });
    }
    this.#failingSinceMono = undefined;
  }

  /** A change of the interval in force. */
  interval(): void {
    const schedule = this.#schedule;
    if (schedule.intervalSeconds === this.#interval) return;
    this.#interval = schedule.intervalSeconds;
    this.#logger.info(`Heartbeat interval is now ${this.#interval} s`, {
      source: schedule.intervalSource,
    });
  }
}
