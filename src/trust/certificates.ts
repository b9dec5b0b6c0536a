import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { clockHint, type ClockMeasurement } from "../wire/clock_offset.ts";
import { errorMessage } from "../errors.ts";
import { isoTime } from "../iso_time.ts";
import { sha256Hex } from "../sha256.ts";

/** ECDSA P-256, the only key type the contract allows for agent keys. */
const AGENT_KEY_ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** Clock skew tolerated either way when checking a certificate's validity window. */
const CLOCK_SKEW_SECONDS = 300;

/**
 * Generates the agent's key pair with WebCrypto. Extractable only so that it can be stored as
 * PKCS#8 in the 0600 identity file; it is never sent anywhere.
 */
export async function generateAgentKeyPair(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(AGENT_KEY_ALGORITHM, true, ["sign", "verify"]);
}

/** Encodes DER as PEM with `label`, base64 in lines of 64. */
export function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Exports a private key as a PKCS#8 PEM. */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  return toPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** Creates a PEM PKCS#10 certificate request with `CN=<commonName>`, signed with SHA-256. */
export async function createCsr(keys: CryptoKeyPair, commonName: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    // The JSON name form, so that a hostname with `,` or `=` cannot inject other RDNs.
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
  }, crypto);
  return csr.toString("pem");
}

/** Splits a PEM bundle into its `CERTIFICATE` blocks (other blocks and text are ignored). */
export function splitPemBundle(text: string): string[] {
  const blocks = text.match(
    /-----BEGIN CERTIFICATE-----\r?\n?[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g,
  ) ?? [];
  return blocks.map((block) => `${block.replace(/\r\n/g, "\n")}\n`);
}

/** Parses one PEM certificate, or returns why it cannot be parsed. */
export function parseCertificate(pem: string): x509.X509Certificate | string {
  if (!/^\s*-----BEGIN CERTIFICATE-----/.test(pem)) return "not a PEM certificate";
  try {
    return new x509.X509Certificate(pem);
  } catch (e) {
    return `not a valid certificate (${errorMessage(e)})`;
  }
}

/** The `--ca-pin` of `cert`: `sha256:<hex>` of its DER SubjectPublicKeyInfo. */
export async function certificatePin(cert: x509.X509Certificate): Promise<string> {
  return `sha256:${await sha256Hex(cert.publicKey.rawData)}`;
}

/** A certificate answered by the platform that failed a check; `message` is safe to show. */
export class CertificateCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CertificateCheckError";
  }
}

/** What {@linkcode verifyIssuedCertificate} needs. */
export interface VerifyIssuedCertificateInput {
  /** The answer's `certificate`: the leaf, optionally followed by its intermediate CAs (PEM). */
  certificatePem: string;
  /** The answer's `ca_certificates`: the anchors the path must end at. */
  caCertificatePems: string[];
  /** The public key of the pair the CSR was made with. */
  publicKey: CryptoKey;
  /** Wall-clock now, ms. */
  now: number;
  skewSeconds?: number;
  /** The platform's clock against this host's, added to a "not yet valid"/"expired" error. */
  clock?: ClockMeasurement;
}

/** A verified certificate: its validity window and the path that proves it. */
export interface VerifiedCertificate {
  notBefore: Date;
  notAfter: Date;
  /** The leaf alone, as PEM. */
  leafPem: string;
  /** The intermediate CAs between the leaf and the anchor, issuer of the leaf first (PEM). */
  intermediatePems: string[];
}

function describeOffset(ms: number): string {
  const minutes = Math.round(Math.abs(ms) / 60_000);
  if (minutes >= 2) return `${minutes} minutes`;
  return `${Math.round(Math.abs(ms) / 1000)} seconds`;
}

/** Whether two DER encodings are byte for byte the same. */
export function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.every((v, i) => v === y[i]);
}

/** `"CN=..."` of a certificate's subject (or issuer), quoted for messages. */
function named(name: string): string {
  return JSON.stringify(name);
}

/** The validity window check; `what` names the certificate (`certificate`, `intermediate "CN=X"`). */
function checkValidity(
  cert: x509.X509Certificate,
  what: string,
  now: number,
  skewMs: number,
  hint = "",
): void {
  const { notBefore, notAfter } = cert;
  if (notBefore.getTime() - skewMs > now) {
    throw new CertificateCheckError(
      `${what} is not valid until ${isoTime(notBefore.getTime())}, ${
        describeOffset(notBefore.getTime() - now)
      } from now (clock skew? check this host's clock)${hint}`,
    );
  }
  if (notAfter.getTime() + skewMs < now) {
    throw new CertificateCheckError(
      `${what} expired at ${isoTime(notAfter.getTime())}, ${
        describeOffset(now - notAfter.getTime())
      } ago (clock skew? check this host's clock)${hint}`,
    );
  }
}

/** Whether `issuer` names and signed `cert` (a key type that cannot verify it did not sign it). */
export async function issued(
  issuer: x509.X509Certificate,
  cert: x509.X509Certificate,
): Promise<boolean> {
  if (cert.issuer !== issuer.subject) return false;
  try {
    return await cert.verify({ publicKey: issuer, signatureOnly: true }, crypto);
  } catch {
    return false;
  }
}

/** Whether `cert` says it is a CA (basicConstraints CA:true). */
export function isCa(cert: x509.X509Certificate): boolean {
  return cert.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

/**
 * The checks a CA certificate on the path must pass, as OpenSSL (and so nginx) applies them:
 * basicConstraints CA:true (intermediates only: an anchor is trusted as configured), keyCertSign
 * when keyUsage is present, a pathLen that allows the CAs below it, and its validity window.
 */
function checkCa(
  ca: x509.X509Certificate,
  what: string,
  casBelow: number,
  anchor: boolean,
  now: number,
  skewMs: number,
  hint = "",
): void {
  const constraints = ca.getExtension(x509.BasicConstraintsExtension);
  if (!anchor && constraints?.ca !== true) {
    throw new CertificateCheckError(
      `${what} is not a CA (no basicConstraints CA:true), so it cannot issue certificates; the platform's PKI must issue from a CA certificate`,
    );
  }
  const keyUsage = ca.getExtension(x509.KeyUsagesExtension);
  if (keyUsage && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CertificateCheckError(
      `${what} may not sign certificates (its keyUsage lacks keyCertSign)`,
    );
  }
  const pathLength = constraints?.pathLength;
  if (pathLength !== undefined && casBelow > pathLength) {
    throw new CertificateCheckError(
      `path length exceeded: ${what} allows ${pathLength} intermediate CA(s) below it (pathlen:${pathLength}), the chain has ${casBelow}`,
    );
  }
  checkValidity(ca, what, now, skewMs, hint);
}

/**
 * Checks a certificate issued for our CSR before anything is stored. `certificatePem` may be a
 * chain, leaf first, then its intermediate CAs; the path leaf → intermediates → one of the
 * `ca_certificates` must hold: every signature, every validity window (± skew), CA:true, keyUsage
 * keyCertSign and pathLen on the CAs, clientAuth on the leaf (when it restricts its usage), and the
 * leaf carries our public key. Throws {@linkcode CertificateCheckError} naming the failed check.
 */
export async function verifyIssuedCertificate(
  input: VerifyIssuedCertificateInput,
): Promise<VerifiedCertificate> {
  const skewMs = (input.skewSeconds ?? CLOCK_SKEW_SECONDS) * 1000;
  const pems = splitPemBundle(input.certificatePem);
  const chain: x509.X509Certificate[] = [];
  for (const [i, pem] of (pems.length > 0 ? pems : [input.certificatePem]).entries()) {
    const cert = parseCertificate(pem);
    if (typeof cert === "string") {
      throw new CertificateCheckError(
        i === 0 ? `certificate is ${cert}` : `certificate chain entry ${i + 1} is ${cert}`,
      );
    }
    chain.push(cert);
  }
  const cas: x509.X509Certificate[] = [];
  for (const [i, pem] of input.caCertificatePems.entries()) {
    const ca = parseCertificate(pem);
    if (typeof ca === "string") {
      throw new CertificateCheckError(`ca_certificates[${i}] is ${ca}`);
    }
    cas.push(ca);
  }

  const ours = await crypto.subtle.exportKey("spki", input.publicKey);
  const oursAt = chain.findIndex((c) => sameBytes(c.publicKey.rawData, ours));
  if (oursAt > 0) {
    throw new CertificateCheckError(
      `certificate chain is in the wrong order: this agent's certificate is entry ${
        oursAt + 1
      }, it must come first (leaf, then its issuer, up to the root)`,
    );
  }
  if (oursAt < 0) {
    throw new CertificateCheckError(
      "certificate was issued for another key, not the one this agent generated",
    );
  }
  const leaf = chain[0]!;
  const hint = clockHint(input.clock);
  // Not valid yet by this host's clock, but by the platform's (measured, and warned about): it will
  // be, and refusing it would spend the token for nothing (`enroll --check` only warns about the
  // same offset). An expired one never becomes valid: refused whatever the clocks say.
  const notYet = leaf.notBefore.getTime() - skewMs > input.now;
  const platformNow = input.clock && notYet ? input.now + input.clock.seconds * 1000 : undefined;
  checkValidity(leaf, "certificate", platformNow ?? input.now, skewMs, hint);
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku && !eku.usages.includes(x509.ExtendedKeyUsage.clientAuth)) {
    throw new CertificateCheckError(
      "certificate is not for client authentication (its extendedKeyUsage lacks clientAuth)",
    );
  }
  if (isCa(leaf)) {
    throw new CertificateCheckError("certificate is a CA certificate, not an agent certificate");
  }

  // Walk up from the leaf: each step is an anchor (done) or the next chain entry.
  const path: x509.X509Certificate[] = [leaf];
  for (let i = 0;; i++) {
    const current = path[i]!;
    const currentName = i === 0 ? "certificate" : `intermediate ${named(current.subject)}`;
    let anchor: x509.X509Certificate | undefined;
    for (const ca of cas) {
      if (await issued(ca, current)) {
        anchor = ca;
        break;
      }
    }
    if (anchor) {
      const selfIssued = anchor.subject === anchor.issuer;
      const what = `${selfIssued ? "root" : "CA"} ${named(anchor.subject)} of ca_certificates`;
      checkCa(anchor, what, i, true, input.now, skewMs, hint);
      if (selfIssued || path.includes(anchor)) break;
      // An intermediate among ca_certificates (leaf alone, ca_certificates = [issuing, root]): it
      // goes on the presented path too, so that an edge trusting only the root can verify us.
      let parent = false;
      for (const ca of cas) {
        if (ca !== anchor && !path.includes(ca) && await issued(ca, anchor)) parent = true;
      }
      if (!parent) break;
      path.push(anchor);
      continue;
    }
    const next = chain[i + 1];
    if (next && await issued(next, current)) {
      checkCa(next, `intermediate ${named(next.subject)}`, i, false, input.now, skewMs, hint);
      path.push(next);
      continue;
    }
    for (const [j, later] of chain.entries()) {
      if (j > i + 1 && await issued(later, current)) {
        throw new CertificateCheckError(
          `certificate chain is in the wrong order: the issuer of ${
            i === 0 ? "the leaf" : currentName
          } is entry ${j + 1}, it must be entry ${i + 2} (leaf, then its issuer, up to the root)`,
        );
      }
    }
    if ([...cas, ...chain].some((c) => c !== current && c.subject === current.issuer)) {
      throw new CertificateCheckError(
        `${currentName} is not signed by any of the ca_certificates: its signature does not verify with the key of ${
          named(current.issuer)
        } (a look-alike CA of the same name?)`,
      );
    }
    if (current.issuer === current.subject) {
      throw new CertificateCheckError(
        `certificate chain ends at ${
          named(current.subject)
        }, which is not one of the ca_certificates`,
      );
    }
    if (i === 0) {
      throw new CertificateCheckError(
        `certificate is not signed by any of the ca_certificates and its issuer ${
          named(current.issuer)
        } is not in the chain: a missing intermediate CA (the platform must send it after the leaf) or ca_certificates of another PKI`,
      );
    }
    throw new CertificateCheckError(
      `certificate chain is missing an intermediate: ${currentName} is issued by ${
        named(current.issuer)
      }, which is neither in the chain nor one of the ca_certificates`,
    );
  }
  return {
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    leafPem: pems[0] ?? input.certificatePem,
    intermediatePems: path.slice(1).map((c) =>
      chain.includes(c) ? pems[chain.indexOf(c)]! : splitPemBundle(c.toString("pem"))[0]!
    ),
  };
}
