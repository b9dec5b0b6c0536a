import type { Host } from "../wire/telemetry_wire.ts";
import { sha256Hex } from "../sha256.ts";

/** The inventory fields of one heartbeat body. */
export interface HostFields {
  /** SHA-256 (lowercase hex) of `JSON.stringify(host)`. */
  host_digest: string;
  /** Present only when the platform needs the full inventory. */
  host?: Host;
}

/**
 * Inventory delta (contract v1): a heartbeat always carries `host_digest`, and carries the full
 * `host` only on the first beat of the process, when the host's JSON text differs from the one
 * the platform last acknowledged (a 2xx), or after the platform answered `host_required`. Most
 * beats thus stay under 1,024 bytes, the size from which Deno's client stalls a request.
 */
export class HostDelta {
  readonly #digestOf: (text: string) => Promise<string>;
  /** JSON text of the newest host seen and its digest: hashed only when the text changes. */
  #text: string | undefined;
  #digest = "";
  /** JSON text of the host the platform last acknowledged in this process. */
  #acknowledged: string | undefined;

  /** `digestOf` defaults to {@linkcode sha256Hex}; tests pass one that records what was hashed. */
  constructor(digestOf: (text: string) => Promise<string> = sha256Hex) {
    this.#digestOf = digestOf;
  }

  /**
   * The `host_digest` and, when due, `host` fields for a heartbeat about `host`; with
   * `digestOnly` false (the platform did not advertise `host_digest`) `host` is always due.
   */
  async fields(host: Host, digestOnly = true): Promise<HostFields> {
    const text = JSON.stringify(host);
    if (text !== this.#text) {
      this.#digest = await this.#digestOf(text);
      this.#text = text;
    }
    return digestOnly && text === this.#acknowledged
      ? { host_digest: this.#digest }
      : { host_digest: this.#digest, host };
  }

  /**
   * Records a 2xx answer to the beat last built by {@linkcode fields}: a `host` it carried is
   * acknowledged; `hostRequired` makes the next beat carry `host` whatever was acknowledged.
   * A failed beat is not acknowledged, so a `host` it carried is sent again.
   */
  accepted(carriedHost: boolean, hostRequired: boolean): void {
    if (hostRequired) this.#acknowledged = undefined;
    else if (carriedHost) this.#acknowledged = this.#text;
  }
}
