/** Test fixture: real agent identities (key, certificate from a dev CA) without a platform. */
import {
  createCsr,
  exportPrivateKeyPem,
  generateAgentKeyPair,
} from "../../src/trust/certificates.ts";
import type { Identity } from "../../src/state/identity_store.ts";
import { type DevCa, issueAgentCertificate, parseCsr } from "../../tasks/dev_platform/dev_ca.ts";

/** What {@linkcode issueFor} needs to know about the certificate. */
export interface IssueOptions {
  agentId: string;
  notBefore: Date;
  notAfter: Date;
}

/** Issues a certificate from `ca` for the key of a PEM CSR, as a platform would. */
export async function issueFor(ca: DevCa, csrPem: string, opts: IssueOptions): Promise<string> {
  const csr = await parseCsr(csrPem);
  const cert = await issueAgentCertificate(ca, { csr, ...opts });
  return cert.toString("pem");
}

/** An identity with a fresh key and a certificate from `ca` valid over the given window. */
export async function makeIdentity(
  ca: DevCa,
  opts: Partial<IssueOptions> & { platformUrl?: string; commonName?: string } = {},
): Promise<Identity> {
  const agentId = opts.agentId ?? "agent-1";
  const notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + 30 * 86_400_000);
  const keys = await generateAgentKeyPair();
  const csr = await createCsr(keys, opts.commonName ?? "host-1.example");
  const certificate = await issueFor(ca, csr, { agentId, notBefore, notAfter });
  return {
    version: 1,
    agent_id: agentId,
    platform_url: opts.platformUrl ?? "https://127.0.0.1:1/",
    certificate,
    ca_certificates: [ca.certPem],
    bootstrap_ca_certificates: [ca.certPem],
    private_key: await exportPrivateKeyPem(keys.privateKey),
    service_account_token: "oc_sat_fixture_token_0123456789",
    machine_id: null,
    enrolled_at: notBefore.toISOString(),
    heartbeat_interval_seconds: 60,
    certificate_not_before: new Date(Math.floor(notBefore.getTime() / 1000) * 1000).toISOString(),
    certificate_not_after: new Date(Math.floor(notAfter.getTime() / 1000) * 1000).toISOString(),
  };
}
