import type { Logger } from "../log.ts";
import { errorMessage } from "../errors.ts";

/**
 * Turns a telemetry source's failure into `null` and one debug line per source: a permanently
 * missing source costs one line per process, not one per heartbeat.
 */
export class SourceFailures {
  readonly #logger: Logger | undefined;
  readonly #reported = new Set<string>();

  constructor(logger?: Logger) {
    this.#logger = logger;
  }

  /** Records that `source` failed (once per source) and returns null. */
  fail(source: string, error: unknown): null {
    if (!this.#reported.has(source)) {
      this.#reported.add(source);
      this.#logger?.debug(`Cannot read ${source}; reporting null`, {
        source,
        error: errorMessage(error),
      });
    }
    return null;
  }

  /** `read()`, or null (recorded) when it throws or yields null. */
  try<T>(source: string, read: () => T | null): T | null {
    try {
      const value = read();
      return value === null ? this.fail(source, "no usable value") : value;
    } catch (error) {
      return this.fail(source, error);
    }
  }

  /** `read()`, or null (recorded) when it rejects or yields null. */
  async tryAsync<T>(source: string, read: () => Promise<T | null>): Promise<T | null> {
    try {
      const value = await read();
      return value === null ? this.fail(source, "no usable value") : value;
    } catch (error) {
      return this.fail(source, error);
    }
  }
}
