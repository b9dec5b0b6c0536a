import "reflect-metadata";
import * as x509 from "@peculiar/x509";

/** ECDSA P-256, the only key type the contract allows for agent keys. */
export const AGENT_KEY_ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** Clock skew tolerated either way when checking a certificate's validity window. */
export const CLOCK_SKEW_SECONDS = 300;

/**
 * Generates the agent's key pair with WebCrypto. Extractable only so that it can be stored as
 * PKCS#8 in the 0600 identity file; it is never sent anywhere.
 */
export async function generateAgentKeyPair(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(AGENT_KEY_ALGORITHM, true, ["sign", "verify"]);
}

function toPem(der: ArrayBuffer, label: string): string {
  const bytes = new Uint8Array(der);
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
    return `not a valid certificate (${(e as Error).message})`;
  }
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
  certificatePem: string;
  caCertificatePems: string[];
  /** The public key of the pair the CSR was made with. */
  publicKey: CryptoKey;
  /** Wall-clock now, ms. */
  now: number;
  skewSeconds?: number;
}

/** The validity window of a verified certificate. */
export interface VerifiedCertificate {
  notBefore: Date;
  notAfter: Date;
}

function describeOffset(ms: number): string {
  const minutes = Math.round(Math.abs(ms) / 60_000);
  if (minutes >= 2) return `${minutes} minutes`;
  return `${Math.round(Math.abs(ms) / 1000)} seconds`;
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.every((v, i) => v === y[i]);
}

/**
 * Checks a certificate issued for our CSR before anything is stored: it parses, it carries our
 * public key, it is valid now (± skew), every CA certificate parses, and one of them signed it.
 * Throws {@linkcode CertificateCheckError} naming the failed check.
 */
export async function verifyIssuedCertificate(
  input: VerifyIssuedCertificateInput,
): Promise<VerifiedCertificate> {
  const skewMs = (input.skewSeconds ?? CLOCK_SKEW_SECONDS) * 1000;
  const cert = parseCertificate(input.certificatePem);
  if (typeof cert === "string") throw new CertificateCheckError(`certificate is ${cert}`);
  const cas: x509.X509Certificate[] = [];
  for (const [i, pem] of input.caCertificatePems.entries()) {
    const ca = parseCertificate(pem);
    if (typeof ca === "string") {
      throw new CertificateCheckError(`ca_certificates[${i}] is ${ca}`);
    }
    cas.push(ca);
  }

  const ours = await crypto.subtle.exportKey("spki", input.publicKey);
  if (!sameBytes(cert.publicKey.rawData, ours)) {
    throw new CertificateCheckError(
      "certificate was issued for another key, not the one this agent generated",
    );
  }

  const { notBefore, notAfter } = cert;
  if (notBefore.getTime() - skewMs > input.now) {
    throw new CertificateCheckError(
      `certificate is not valid until ${notBefore.toISOString()}, ${
        describeOffset(notBefore.getTime() - input.now)
      } from now (clock skew? check this host's clock)`,
    );
  }
  if (notAfter.getTime() + skewMs < input.now) {
    throw new CertificateCheckError(
      `certificate expired at ${notAfter.toISOString()}, ${
        describeOffset(input.now - notAfter.getTime())
      } ago (clock skew? check this host's clock)`,
    );
  }

  let signed = false;
  for (const ca of cas) {
    try {
      if (await cert.verify({ publicKey: ca, signatureOnly: true }, crypto)) {
        signed = true;
        break;
      }
    } catch {
      // A CA whose key type cannot verify this signature simply is not the issuer.
    }
  }
  if (!signed) {
    throw new CertificateCheckError("certificate is not signed by any of the ca_certificates");
  }
  return { notBefore, notAfter };
}
