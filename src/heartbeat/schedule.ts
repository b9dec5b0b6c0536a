/**
 * The pure heartbeat schedule: which interval is in force (flag, platform hint, enrollment,
 * default) and how long to wait after a success or a failure.
 */
import {
  type BackoffPolicy,
  DEFAULT_BACKOFF,
  failureDelay,
  MAX_RETRY_SPREAD_SECONDS,
  withJitter,
} from "../platform/backoff.ts";

/** Default heartbeat interval when neither flag, platform nor enrollment set one. */
const DEFAULT_INTERVAL_SECONDS = 60;
/** Bounds of an interval the platform may ask for (`next_heartbeat_seconds`). */
const PLATFORM_INTERVAL_BOUNDS = { min: 10, max: 86400 } as const;
/** Bounds of `--interval`. */
const FLAG_INTERVAL_BOUNDS = { min: 1, max: 86400 } as const;

/** What the platform's `next_heartbeat_seconds` amounted to. */
export type IntervalHint =
  | { kind: "absent" }
  | { kind: "ok"; seconds: number }
  | { kind: "clamped"; seconds: number; raw: number }
  | { kind: "invalid"; raw: unknown };

/**
 * Classifies a `next_heartbeat_seconds` value: integers are clamped to 10..86400; zero, negative,
 * non-integer and non-number values are invalid (the caller ignores them with a warning).
 */
export function parseIntervalHint(value: unknown): IntervalHint {
  if (value === undefined || value === null) return { kind: "absent" };
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    return { kind: "invalid", raw: value };
  }
  const { min, max } = PLATFORM_INTERVAL_BOUNDS;
  const seconds = Math.min(max, Math.max(min, value));
  return seconds === value ? { kind: "ok", seconds } : { kind: "clamped", seconds, raw: value };
}

/** Options for {@linkcode HeartbeatSchedule}. */
export interface HeartbeatScheduleOptions {
  /** `--interval` (or `interval_seconds` in agent.json): overrides everything else. */
  intervalSeconds?: number;
  /** The interval the platform gave at enrollment. */
  enrollmentIntervalSeconds?: number;
  random: () => number;
  backoff?: BackoffPolicy;
}

/**
 * The pure heartbeat schedule: which interval applies, and how long to wait after a success or a
 * failure. It holds no timer and no clock, so the fleet simulation can drive thousands of them.
 */
export class HeartbeatSchedule {
  readonly #flag: number | undefined;
  readonly #enrollment: number | undefined;
  readonly #random: () => number;
  readonly #backoff: BackoffPolicy;
  #platform: number | undefined;
  /** Consecutive failures since the last success. */
  failures = 0;

  constructor(options: HeartbeatScheduleOptions) {
    const flag = options.intervalSeconds;
    if (flag !== undefined) {
      const { min, max } = FLAG_INTERVAL_BOUNDS;
      if (!Number.isFinite(flag) || flag < min || flag > max) {
        throw new RangeError(`interval ${flag} is outside ${min}..${max} seconds`);
      }
    }
    this.#flag = flag;
    const enrolled = options.enrollmentIntervalSeconds;
    this.#enrollment = enrolled === undefined ? undefined : (() => {
      const hint = parseIntervalHint(enrolled);
      return hint.kind === "ok" || hint.kind === "clamped" ? hint.seconds : undefined;
    })();
    this.#random = options.random;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  /** The interval in force: flag > platform's last hint > enrollment > 60 s. */
  get intervalSeconds(): number {
    return this.#flag ?? this.#platform ?? this.#enrollment ?? DEFAULT_INTERVAL_SECONDS;
  }

  /** Where {@linkcode intervalSeconds} comes from. */
  get intervalSource(): "flag" | "platform" | "enrollment" | "default" {
    if (this.#flag !== undefined) return "flag";
    if (this.#platform !== undefined) return "platform";
    if (this.#enrollment !== undefined) return "enrollment";
    return "default";
  }

  /** Takes the platform's `next_heartbeat_seconds`; an invalid value leaves the interval as is. */
  applyHint(value: unknown): IntervalHint {
    const hint = parseIntervalHint(value);
    if (hint.kind === "ok" || hint.kind === "clamped") this.#platform = hint.seconds;
    return hint;
  }

  /** Seconds to wait after a success (resets the backoff): the interval, ±10 %. */
  afterSuccess(): number {
    this.failures = 0;
    return withJitter(this.intervalSeconds, this.#random);
  }

  /**
   * Seconds to wait after a failure: full-jitter exponential backoff, never less than
   * `retryAfterSeconds`. Above that floor the wait is spread over about one interval: a
   * fleet told the same Retry-After (often an HTTP-date: the end of an outage) would otherwise
   * come back in the same second (`deno task bench` measures the peak after an outage). The
   * spread window is at most {@linkcode MAX_RETRY_SPREAD_SECONDS}, so a long interval (a day)
   * cannot stretch a capped Retry-After beyond the documented bound.
   */
  afterFailure(retryAfterSeconds?: number): number {
    this.failures++;
    // U(0,1) x a jittered interval is the forward-recurrence time of a steady fleet: agents come
    // back in steady-state phase. U(0,1) x the bare interval piles returns onto second beats.
    const spread = () =>
      this.#random() *
      Math.min(withJitter(this.intervalSeconds, this.#random), MAX_RETRY_SPREAD_SECONDS);
    return failureDelay(this.failures, this.#random, retryAfterSeconds, spread, this.#backoff);
  }
}
