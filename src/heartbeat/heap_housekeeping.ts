/**
 * A major garbage collection between beats, at most once per period. V8 starts one by itself when
 * the old generation reaches its limit (several times this small heap) or when the process looks
 * idle; a `run` at a short interval never looks idle, so objects that lived a few seconds pile up
 * in the old generation for an hour and more: a slow RSS climb of garbage, not a leak. Needs V8's
 * `--expose-gc` (tasks/permissions.flags); without it this does nothing.
 *
 * @module
 */

/** How often at most: a collection of this heap takes a few milliseconds. */
export const HOUSEKEEPING_PERIOD_MS = 5 * 60_000;

/** V8's `gc()` when the process was started with `--expose-gc`. */
export function exposedGc(): (() => void) | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === "function" ? () => gc() : undefined;
}

/** Runs `collect` when at least `periodMs` passed since the last run (or since creation). */
export class HeapHousekeeping {
  readonly #collect: (() => void) | undefined;
  readonly #monotonicMs: () => number;
  readonly #periodMs: number;
  #last: number;

  constructor(
    collect: (() => void) | undefined,
    monotonicMs: () => number,
    periodMs = HOUSEKEEPING_PERIOD_MS,
  ) {
    this.#collect = collect;
    this.#monotonicMs = monotonicMs;
    this.#periodMs = periodMs;
    this.#last = monotonicMs();
  }

  /** Collects when due; returns whether it did. Called between beats, never on a timer of its own. */
  collectIfDue(): boolean {
    if (this.#collect === undefined) return false;
    const now = this.#monotonicMs();
    if (now - this.#last < this.#periodMs) return false;
    this.#last = now;
    this.#collect();
    return true;
  }
}
