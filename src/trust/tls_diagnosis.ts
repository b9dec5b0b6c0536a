/**
 * Failure path only (loaded by a dynamic import after a handshake was refused): reads the
 * certificate the server presented and names who issued it, since an unknown issuer on a
 * corporate network is almost always a TLS-inspecting proxy.
 */
import { type ChainTunnel, readPresentedChain } from "./ca_pin.ts";
import type * as x509 from "@peculiar/x509";
import { isCa, issued, parseCertificate, sameBytes } from "./certificates.ts";
import { isLoopbackHost } from "../wire/platform_url.ts";

/** Bound of the extra handshake that reads the presented certificate. */
const DIAGNOSIS_TIMEOUT_MS = 5000;

function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029"\\]+/g, " ").trim();
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}

function commonName(name: x509.Name, fallback: string): string {
  return printable(name.getField("CN")[0] ?? fallback);
}

/** Why the trusted CA certificates did not accept the presented chain; see {@linkcode compareTrustedCas}. */
type TrustMismatch =
  /** The file holds a server certificate (or this very one), not a CA: certain. */
  | { kind: "not_ca" | "own_certificate" | "remade_ca"; text: string }
  /** The file holds other CAs: the wrong file, or something in the path re-signed the chain. */
  | { kind: "other_ca"; held: string };

/**
 * What is wrong with the trusted CA certificates given what the server presented, or undefined
 * when they are not the explanation (a CA among them signed a presented certificate: then the
 * server or something in the path is at fault). Checked before any guess at a proxy.
 */
async function compareTrustedCas(
  trusted: readonly string[],
  chain: readonly x509.X509Certificate[],
  label = "the trusted CA bundle",
): Promise<TrustMismatch | undefined> {
  const leaf = chain[0];
  if (leaf === undefined) return undefined;
  const certs = trusted.map(parseCertificate).filter((c) => typeof c !== "string");
  if (certs.length === 0) return undefined;
  const name = (c: x509.X509Certificate) => `"${commonName(c.subjectName, c.subject)}"`;
  const issuer = `"${commonName(leaf.issuerName, leaf.issuer)}"`;
  if (certs.some((c) => sameBytes(c.rawData, leaf.rawData))) {
    return {
      kind: "own_certificate",
      text:
        `${label} holds the server's own certificate, not the CA that issued it: give the certificate of ${issuer} instead`,
    };
  }
  const cas = certs.filter(isCa);
  if (cas.length === 0) {
    return {
      kind: "not_ca",
      text: `${label} holds ${
        certs.length === 1 ? "a server certificate" : "server certificates"
      } (${
        certs.map(name).join(", ")
      }), not a CA: give the certificate of ${issuer}, the CA that issued the platform's`,
    };
  }
  const issuers = new Set(chain.map((c) => c.issuer));
  const named = cas.filter((c) => issuers.has(c.subject));
  if (named.length > 0) {
    // Same name, other key: a CA re-made under the old name. Else the file is not the problem.
    for (const ca of named) {
      for (const cert of chain) if (await issued(ca, cert)) return undefined;
    }
    return {
      kind: "remade_ca",
      text: `${label} holds a CA named ${
        name(named[0]!)
      } whose key did not sign it (a CA re-made under the same name?): give the CA certificate the platform uses now`,
    };
  }
  return { kind: "other_ca", held: [...new Set(cas.map(name))].join(", ") };
}

/**
 * What the refused server certificate says about the cause: first a comparison with the trusted
 * CA certificates (`trusted`: a server certificate instead of its CA, another CA), then, on a
 * path where one can be (through a proxy, or to a host other than loopback), a TLS-inspecting
 * proxy. Undefined when the certificate cannot be read.
 */
export async function describeUntrustedCertificate(
  host: string,
  port: number,
  timeoutMs: number,
  tunnel?: ChainTunnel,
  trusted?: readonly string[],
  label = "the trusted CA bundle",
): Promise<string | undefined> {
  let pems: string[];
  try {
    pems = await readPresentedChain(
      host,
      port,
      Math.min(timeoutMs, DIAGNOSIS_TIMEOUT_MS),
      tunnel,
    );
  } catch {
    return undefined;
  }
  const chain = pems.map(parseCertificate).filter((c) => typeof c !== "string");
  const leaf = chain[0];
  if (leaf === undefined) return undefined;
  const issuer = commonName(leaf.issuerName, leaf.issuer);
  const subject = commonName(leaf.subjectName, leaf.subject);
  const presented = `certificate issued by "${issuer}" (subject "${subject}")`;
  const mismatch = trusted === undefined
    ? undefined
    : await compareTrustedCas(trusted, chain, label);
  if (mismatch !== undefined && mismatch.kind !== "other_ca") {
    return `${presented}, but ${mismatch.text}`;
  }
  const proxyPossible = tunnel !== undefined || !isLoopbackHost(host);
  if (mismatch?.kind === "other_ca" && !proxyPossible) {
    return `${presented}, but ${label} holds ${mismatch.held}, not "${issuer}", which issued it: give the CA certificate of "${issuer}"`;
  }
  const not = mismatch?.kind === "other_ca"
    ? `not by ${mismatch.held} (${label})`
    : "not by a trusted or pinned CA";
  return `${presented}, ${not}${
    proxyPossible
      ? `; a TLS-inspecting proxy is probably in the path: exempt this host from inspection, or enroll with --ca-file/--ca-pin${
        mismatch?.kind === "other_ca" ? ` (or ${label} is not the platform's CA)` : ""
      }`
      : ""
  }`;
}
