/** One platform request's abort: its deadline and the caller's signal, and which came first. */
import { Deadline } from "../deadline.ts";

/**
 * One controller per request, fed by a deadline (deadline.ts) and by the caller's signal through a
 * listener removed on dispose: AbortSignal.any over a long-lived signal leaks (Deno #24842), and an
 * AbortSignal.timeout cannot be cancelled, so each one stays alive for the whole timeout; a plain
 * timer still wakes the process at its deadline after it is cleared.
 */
export class RequestSignal implements Disposable {
  readonly #controller = new AbortController();
  readonly #deadline: Deadline;
  readonly #caller: AbortSignal | undefined;
  #cause: "timeout" | "aborted" | undefined;

  constructor(timeoutMs: number, caller?: AbortSignal) {
    this.#deadline = new Deadline(timeoutMs, () => {
      this.#cause ??= "timeout";
      this.#controller.abort();
    });
    this.#caller = caller;
    caller?.addEventListener("abort", this.#onCallerAbort, { once: true });
  }

  #onCallerAbort = () => {
    this.#cause ??= "aborted";
    this.#controller.abort();
  };

  /** The signal the request runs under. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** What aborted the request first (the deadline or the caller); undefined while nothing did. */
  get cause(): "timeout" | "aborted" | undefined {
    return this.#cause;
  }

  [Symbol.dispose](): void {
    this.#deadline.clear();
    this.#caller?.removeEventListener("abort", this.#onCallerAbort);
  }
}
