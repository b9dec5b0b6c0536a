/**
 * Timeouts kept by short ticks instead of one long timer.
 *
 * Deno 2.9.6 still wakes the process at the deadline of a cleared timer (three times: tokio's
 * timer wheel cascades down to it), so a 15-s request timeout that a 50-ms heartbeat clears wakes
 * an idle agent 15 s later. A chain of ticks of at most {@linkcode DEADLINE_TICK_MS} ends within a
 * second of {@linkcode Deadline.clear}, inside the heartbeat it served (docs/footprint.md).
 *
 * @module
 */

/** Longest tick in milliseconds. */
export const DEADLINE_TICK_MS = 1_000;

/** Timer functions a {@linkcode Deadline} uses; tests pass fake ones. */
export interface DeadlineTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  now(): number;
}

const realTimers: DeadlineTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as number),
  now: () => performance.now(),
};

/** Calls `onExpire` once, `ms` milliseconds from now, unless cleared first. */
export class Deadline implements Disposable {
  readonly #due: number;
  readonly #onExpire: () => void;
  readonly #timers: DeadlineTimers;
  #tick: unknown;
  #done = false;

  constructor(ms: number, onExpire: () => void, timers: DeadlineTimers = realTimers) {
    this.#timers = timers;
    this.#due = timers.now() + ms;
    this.#onExpire = onExpire;
    this.#arm();
  }

  #arm(): void {
    const left = this.#due - this.#timers.now();
    if (left <= 0) {
      this.#done = true;
      this.#onExpire();
      return;
    }
    this.#tick = this.#timers.setTimeout(() => {
      if (!this.#done) this.#arm();
    }, Math.min(left, DEADLINE_TICK_MS));
  }

  /** Stops the deadline; `onExpire` will not run. */
  clear(): void {
    if (this.#done) return;
    this.#done = true;
    this.#timers.clearTimeout(this.#tick);
    this.#tick = undefined;
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}

/**
 * An `AbortSignal` aborted with a `TimeoutError` after `ms`, like `AbortSignal.timeout`, and the
 * {@linkcode Deadline} that clears it.
 */
export function timeoutSignal(
  ms: number,
  timers?: DeadlineTimers,
): { signal: AbortSignal; deadline: Deadline } {
  const controller = new AbortController();
  const deadline = new Deadline(
    ms,
    () => controller.abort(new DOMException("Signal timed out.", "TimeoutError")),
    timers,
  );
  return { signal: controller.signal, deadline };
}
