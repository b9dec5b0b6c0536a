/**
 * The `identity.json` entry of the bundle: identity METADATA only. The stored identity is read
 * through the identity store, then only named, public fields are copied into a new object:
 * agent id, platform URL, certificate facts, CA fingerprints and pins. Never the private key, the
 * bearer or a token, not even a hash of them.
 *
 * @module
 */
import type { AuthMode } from "../config/settings.ts";
import { renewalDueAt } from "../enrollment/renewal.ts";
import { isoTime } from "../iso_time.ts";
import { sha256Hex } from "../sha256.ts";
import type { Identity } from "../state/identity_store.ts";
import type { AgentStatus } from "../state/status_store.ts";
import { certificatePin, parseCertificate } from "../trust/certificates.ts";
import { trustOf } from "../trust/trust_source.ts";
import type { DiagnosticEntry } from "./manifest.ts";
import { safeMessage, safeUrl } from "./sanitize.ts";

/** Public facts of one certificate. */
async function certificateFacts(pem: string): Promise<Record<string, unknown>> {
  const cert = parseCertificate(pem);
  if (typeof cert === "string") return { problem: cert };
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial: cert.serialNumber,
    not_before: isoTime(cert.notBefore.getTime()),
    not_after: isoTime(cert.notAfter.getTime()),
    sha256_fingerprint: await sha256Hex(cert.rawData),
    pin: await certificatePin(cert),
  };
}

/** The bundle's `identity.json`: named public fields of `identity`, and when renewal is due. */
export async function identityEntry(
  identity: Identity,
  auth: { mode: AuthMode; source: string },
  status: AgentStatus | null,
): Promise<DiagnosticEntry> {
  const all = (pems: readonly string[] | undefined) =>
    Promise.all((pems ?? []).map((pem) => certificateFacts(pem)));
  const trust = trustOf(identity);
  const notBefore = Date.parse(identity.certificate_not_before);
  const notAfter = Date.parse(identity.certificate_not_after);
  const renewal = status?.agent_id === identity.agent_id ? status.renewal ?? null : null;
  return {
    name: "identity.json",
    source:
      "identity.json in the state directory, read through the identity store; only the fields named here are copied",
    noSecret:
      "agent id, platform URL without user info or query, certificate and CA metadata (subjects, serials, validity, SHA-256 fingerprints, pins); the private key, the bearer and tokens are never copied, not even hashed",
    content: {
      agent_id: identity.agent_id,
      platform_url: safeUrl(identity.platform_url),
      enrolled_at: identity.enrolled_at,
      auth_mode: auth.mode,
      auth_mode_source: auth.source,
      heartbeat_interval_seconds: identity.heartbeat_interval_seconds,
      certificate: await certificateFacts(identity.certificate),
      intermediate_certificates: await all(identity.intermediate_certificates),
      ca_certificates: await all(identity.ca_certificates),
      bootstrap_ca_certificates: await all(identity.bootstrap_ca_certificates),
      trust: { source: trust.source, ca_pins: trust.ca_pins ?? [] },
      renewal: {
        // run picks a time in this window (two thirds of the lifetime, ±10 %).
        window: Number.isNaN(notBefore) || Number.isNaN(notAfter) ? null : {
          earliest: isoTime(renewalDueAt(notBefore, notAfter, () => 0)),
          latest: isoTime(renewalDueAt(notBefore, notAfter, () => 1)),
        },
        next_at: renewal?.next_at ?? null,
        last_renewed_at: renewal?.last_renewed_at ?? null,
        last_error: renewal?.last_error == null ? null : safeMessage(renewal.last_error),
      },
    },
  };
}
