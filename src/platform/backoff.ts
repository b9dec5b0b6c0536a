/** Longest `Retry-After` the agent honours, so a hostile or broken platform cannot park it. */
export const RETRY_AFTER_CAP_SECONDS = 3600;

/** Most the fleet spread may add above a `Retry-After` floor: 10 % of the cap (360 s). */
export const MAX_RETRY_SPREAD_SECONDS = RETRY_AFTER_CAP_SECONDS / 10;

/**
 * Longest wait after any failure, whatever the interval or the platform says: the Retry-After cap
 * plus the most spread (3960 s).
 */
const MAX_FAILURE_DELAY_SECONDS = RETRY_AFTER_CAP_SECONDS + MAX_RETRY_SPREAD_SECONDS;

/** Exponential backoff bounds, in seconds. */
export interface BackoffPolicy {
  baseSeconds: number;
  capSeconds: number;
}

/** Heartbeat and enrollment retry policy: from 1 s, doubling, capped at 300 s. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseSeconds: 1, capSeconds: 300 };

/**
 * Full-jitter exponential backoff ("AWS full jitter"): uniform in [0, min(cap, base·2^(n-1))]
 * after the n-th consecutive failure, so that a fleet failing together does not retry together.
 */
function fullJitterDelay(
  failures: number,
  random: () => number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const exponent = Math.max(0, Math.min(failures - 1, 30));
  const ceiling = Math.min(policy.capSeconds, policy.baseSeconds * 2 ** exponent);
  return random() * ceiling;
}

/**
 * Seconds to wait after the `failures`-th consecutive failure: {@linkcode fullJitterDelay}, never
 * less than the platform's `Retry-After` (itself at most {@linkcode RETRY_AFTER_CAP_SECONDS}).
 * Above that floor `spread()` seconds more are added (at most
 * {@linkcode MAX_RETRY_SPREAD_SECONDS}), so agents told the same Retry-After do not all come back
 * in the same instant. The result never exceeds {@linkcode MAX_FAILURE_DELAY_SECONDS}.
 */
export function failureDelay(
  failures: number,
  random: () => number,
  retryAfterSeconds?: number,
  spread?: () => number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const backoff = Math.min(fullJitterDelay(failures, random, policy), MAX_FAILURE_DELAY_SECONDS);
  if (retryAfterSeconds === undefined || !(retryAfterSeconds > 0)) return backoff;
  const floor = Math.min(retryAfterSeconds, RETRY_AFTER_CAP_SECONDS);
  const extra = Math.min(Math.max(0, spread ? spread() : 0), MAX_RETRY_SPREAD_SECONDS);
  return Math.max(backoff, floor + extra);
}

/** `seconds` with uniform ±`fraction` jitter (default ±10 %). */
export function withJitter(seconds: number, random: () => number, fraction = 0.1): number {
  return seconds * (1 - fraction + 2 * fraction * random());
}

/**
 * Parses a `Retry-After` header (delta-seconds or HTTP-date) into seconds from `nowMs`, capped at
 * {@linkcode RETRY_AFTER_CAP_SECONDS}. Garbage and negative values yield `undefined` (ignored).
 */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  if (/^\d+$/.test(text)) {
    const seconds = Number(text);
    return Number.isFinite(seconds) ? Math.min(seconds, RETRY_AFTER_CAP_SECONDS) : undefined;
  }
  // HTTP-date only (IMF-fixdate and the obsolete forms Date.parse accepts); never bare numbers.
  if (!/^[A-Za-z]{3},? /.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, (at - nowMs) / 1000), RETRY_AFTER_CAP_SECONDS);
}
