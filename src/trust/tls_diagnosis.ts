/**
 * Failure path only (loaded by a dynamic import after a handshake was refused): reads the
 * certificate the server presented and names who issued it, since an unknown issuer on a
 * corporate network is almost always a TLS-inspecting proxy.
 */
import { type ChainTunnel, readPresentedChain } from "./ca_pin.ts";
import { parseCertificate } from "./certificates.ts";

/** Bound of the extra handshake that reads the presented certificate. */
const DIAGNOSIS_TIMEOUT_MS = 5000;

function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029"\\]+/g, " ").trim();
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}

/**
 * `certificate issued by "<issuer>" (subject "<subject>"), not by a trusted or pinned CA; a
 * TLS-inspecting proxy is probably in the path: ...`, or undefined when the certificate cannot
 * be read.
 */
export async function describeUntrustedCertificate(
  host: string,
  port: number,
  timeoutMs: number,
  tunnel?: ChainTunnel,
): Promise<string | undefined> {
  let chain: string[];
  try {
    chain = await readPresentedChain(
      host,
      port,
      Math.min(timeoutMs, DIAGNOSIS_TIMEOUT_MS),
      tunnel,
    );
  } catch {
    return undefined;
  }
  const leaf = chain[0] === undefined ? undefined : parseCertificate(chain[0]);
  if (leaf === undefined || typeof leaf === "string") return undefined;
  const issuer = leaf.issuerName.getField("CN")[0] ?? leaf.issuer;
  const subject = leaf.subjectName.getField("CN")[0] ?? leaf.subject;
  return `certificate issued by "${printable(issuer)}" (subject "${
    printable(subject)
  }"), not by a trusted or pinned CA; a TLS-inspecting proxy is probably in the path: exempt this host from inspection, or enroll with --ca-file/--ca-pin`;
}
