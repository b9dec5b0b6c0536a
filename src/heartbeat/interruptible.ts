/** The heartbeat loop's waits and requests, both cut short by shutdown. */

/** Timer seam (global timers in production, a fake clock in tests). */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/**
 * The loop's one timer and one request in flight, both cut short by shutdown, which gets one
 * listener for the life of the loop.
 */
export class Interruptible implements Disposable {
  readonly #shutdown: AbortSignal;
  readonly #timers: Timers;
  #request: AbortController | undefined;
  #timer: unknown;
  #wake: (() => void) | undefined;

  constructor(shutdown: AbortSignal, timers: Timers) {
    this.#shutdown = shutdown;
    this.#timers = timers;
    shutdown.addEventListener("abort", this.#onShutdown, { once: true });
  }

  #onShutdown = () => {
    this.#request?.abort(this.#shutdown.reason);
    this.#clearTimer();
    this.#wake?.();
  };

  #clearTimer() {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Runs `send` with a signal that shutdown aborts; its answer or the error it rejected with. */
  async send<T>(
    send: (signal: AbortSignal) => Promise<T>,
  ): Promise<{ response: T } | { error: unknown }> {
    this.#request = new AbortController();
    try {
      return { response: await send(this.#request.signal) };
    } catch (error) {
      return { error };
    } finally {
      this.#request = undefined;
    }
  }

  /** Waits `ms`, or until shutdown. */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#shutdown.aborted) return resolve();
      this.#wake = resolve;
      this.#timer = this.#timers.setTimeout(() => {
        this.#timer = undefined;
        this.#wake = undefined;
        resolve();
      }, Math.max(0, ms));
    });
  }

  [Symbol.dispose](): void {
    this.#shutdown.removeEventListener("abort", this.#onShutdown);
    this.#clearTimer();
  }
}
