import * as z from "../zod.ts";
import type { RootStore } from "./trust_store.ts";

/**
 * What enrollment trusted for the platform's server, kept in `identity.json` so that every later
 * client trusts at least that (plus the platform's `ca_certificates`): the `--ca-file` bundle, the
 * CA certificates that matched a `--ca-pin` (both stored as `bootstrap_ca_certificates`), the
 * operating system's trust store, or Deno's bundled Mozilla roots (agents enrolled before this
 * field existed without `--ca-file`).
 */
export const TrustSchema = z.object({
  source: z.enum(["ca_file", "ca_pin", "system", "mozilla"]),
  /** The `--ca-pin` values enrollment matched, for `status` and re-enrollment. */
  ca_pins: z.optional(z.array(z.string())),
});
/** Enrollment trust. */
export type Trust = z.infer<typeof TrustSchema>;

/** The trust of an identity, also for files written before `trust` existed. */
export function trustOf(identity: { trust?: Trust; bootstrap_ca_certificates: string[] }): Trust {
  if (identity.trust) return identity.trust;
  return { source: identity.bootstrap_ca_certificates.length > 0 ? "ca_file" : "mozilla" };
}

/** The Deno root store a client for this trust adds to its CA certificates. */
export function rootStoreOf(trust: Trust): RootStore {
  return trust.source === "system" ? "system" : trust.source === "mozilla" ? "mozilla" : "none";
}

/** How errors name the pinned CAs of `trust`: `the CA file` (--ca-file) or `the pinned CA`. */
export function caLabelOf(trust: Trust): string | undefined {
  if (trust.source === "ca_file") return "the CA file";
  return trust.source === "ca_pin" ? "the pinned CA" : undefined;
}

/** One phrase naming the trust source, for messages and `enroll --check`. */
export function describeTrust(trust: Trust, caCount = 0): string {
  switch (trust.source) {
    case "ca_file":
      return `the CA file (${caCount} certificate${caCount === 1 ? "" : "s"})`;
    case "ca_pin":
      return `the presented CA certificate matching --ca-pin ${trust.ca_pins?.join(",") ?? ""}`
        .trimEnd();
    case "system":
      return "the operating system's trust store";
    case "mozilla":
      return "Deno's bundled Mozilla roots";
  }
}
