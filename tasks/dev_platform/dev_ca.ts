import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

/** ECDSA P-256 with SHA-256: the only algorithm the dev CA and contract v1 use. */
const EC_ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const SIGNING_ALG = { name: "ECDSA", hash: "SHA-256" } as const;

/** The SAN URI prefix that names an agent in its certificate. */
export const AGENT_URI_PREFIX = "urn:oneconnect:agent:";

/** A certificate authority held in memory: its certificate and signing key. */
export interface DevCa {
  /** PEM of the CA certificate. */
  readonly certPem: string;
  /** PKCS#8 PEM of the CA private key. */
  readonly keyPem: string;
  /** Parsed CA certificate. */
  readonly cert: x509.X509Certificate;
  /** The CA key pair (private key used to sign). */
  readonly keys: CryptoKeyPair;
}

/** A leaf certificate with its private key, both PEM. */
export interface IssuedPair {
  /** Leaf certificate PEM. */
  readonly certPem: string;
  /** PKCS#8 private key PEM. */
  readonly keyPem: string;
}

/** Options for {@linkcode createDevCa}. */
export interface CreateDevCaOptions {
  /** Subject common name; default "OneConnect Dev CA". */
  commonName?: string;
  /** Clock used for validity; default now. */
  now?: Date;
  /** Lifetime in days; default 3650. */
  validDays?: number;
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  // A positive INTEGER: clear the top bit so DER needs no sign padding.
  bytes[0] = (bytes[0] ?? 0) & 0x7f | 0x10;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Encodes DER bytes as PEM with the given label. */
export function toPem(der: ArrayBuffer, label: string): string {
  return x509.PemConverter.encode(der, label);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  return toPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** Generates an ECDSA P-256 key pair (extractable, so it can be written as PEM). */
export function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_ALG, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** Creates a fresh self-signed dev CA; tests also use it to make a foreign CA. */
export async function createDevCa(opts: CreateDevCaOptions = {}): Promise<DevCa> {
  const now = opts.now ?? new Date();
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${opts.commonName ?? "OneConnect Dev CA"}`,
    notBefore: new Date(now.getTime() - 86_400_000),
    notAfter: new Date(now.getTime() + (opts.validDays ?? 3650) * 86_400_000),
    keys,
    signingAlgorithm: SIGNING_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportKeyPem(keys.privateKey), cert, keys };
}

/** Loads a dev CA written earlier (certificate PEM and PKCS#8 key PEM). */
export async function loadDevCa(certPem: string, keyPem: string): Promise<DevCa> {
  const cert = new x509.X509Certificate(certPem);
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(keyPem),
    EC_ALG,
    true,
    ["sign"],
  );
  const publicKey = await cert.publicKey.export(EC_ALG, ["verify"]);
  return { certPem, keyPem, cert, keys: { privateKey, publicKey } };
}

/** Options for {@linkcode issueServerCertificate}. */
export interface ServerCertOptions {
  /** DNS names; default ["localhost"]. */
  dnsNames?: string[];
  /** IP addresses; default ["127.0.0.1", "::1"]. */
  ips?: string[];
  /** Clock used for validity; default now. */
  now?: Date;
  /** Lifetime in days; default 825. */
  validDays?: number;
}

/** Issues a TLS server certificate (new P-256 key) for loopback names, signed by `ca`. */
export async function issueServerCertificate(
  ca: DevCa,
  opts: ServerCertOptions = {},
): Promise<IssuedPair> {
  const now = opts.now ?? new Date();
  const keys = await generateKeyPair();
  const dnsNames = opts.dnsNames ?? ["localhost"];
  const ips = opts.ips ?? ["127.0.0.1", "::1"];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${dnsNames[0] ?? ips[0] ?? "localhost"}`,
    issuer: ca.cert.subjectName,
    notBefore: new Date(now.getTime() - 86_400_000),
    notAfter: new Date(now.getTime() + (opts.validDays ?? 825) * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...ips.map((value) => ({ type: "ip" as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportKeyPem(keys.privateKey) };
}

/** What {@linkcode parseCsr} found in a valid CSR. */
export interface ParsedCsr {
  /** The parsed request. */
  readonly csr: x509.Pkcs10CertificateRequest;
  /** Subject common name, or null. */
  readonly commonName: string | null;
}

/** Why a CSR was refused; the message is safe to return to the client. */
export class CsrError extends Error {}

/** Parses a PEM PKCS#10 request, checks its signature and that its key is ECDSA P-256. */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw new CsrError("csr is not a PEM PKCS#10 certificate request");
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") {
    throw new CsrError(
      `csr key must be ECDSA P-256, got ${alg.name} ${alg.namedCurve ?? ""}`.trim(),
    );
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrError("csr signature does not verify");
  const cn = csr.subjectName.getField("CN")[0] ?? null;
  return { csr, commonName: cn };
}

/** Options for {@linkcode issueAgentCertificate}. */
export interface AgentCertOptions {
  /** The agent the certificate names (SAN URI). */
  agentId: string;
  /** The verified CSR whose key is certified. */
  csr: ParsedCsr;
  /** Start of validity (the platform's clock). */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
}

/** Signs an agent client certificate: CSR key, SAN `urn:oneconnect:agent:<id>`, EKU clientAuth. */
export async function issueAgentCertificate(
  ca: DevCa,
  opts: AgentCertOptions,
): Promise<x509.X509Certificate> {
  const cn = (opts.csr.commonName ?? opts.agentId).replace(/[,+=<>#;"\\]/g, "_");
  return await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${cn}`,
    issuer: ca.cert.subjectName,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    publicKey: opts.csr.csr.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: `${AGENT_URI_PREFIX}${opts.agentId}` },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(opts.csr.csr.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
}

/** Issues a client certificate with a fresh key (tests: a certificate for an agent, or a foreign one). */
export async function issueClientCertificate(
  ca: DevCa,
  opts: { agentId: string; now?: Date; ttlSeconds?: number },
): Promise<IssuedPair> {
  const now = opts.now ?? new Date();
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${opts.agentId}`,
    keys,
    signingAlgorithm: SIGNING_ALG,
  });
  const cert = await issueAgentCertificate(ca, {
    agentId: opts.agentId,
    csr: { csr, commonName: opts.agentId },
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (opts.ttlSeconds ?? 86_400) * 1000),
  });
  return { certPem: cert.toString("pem"), keyPem: await exportKeyPem(keys.privateKey) };
}

/** Agent ids named by a certificate's `urn:oneconnect:agent:` SAN URIs. */
export function agentIdsOf(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return [];
  return san.names.items
    .filter((n) => n.type === "url" && n.value.startsWith(AGENT_URI_PREFIX))
    .map((n) => n.value.slice(AGENT_URI_PREFIX.length));
}

/** SHA-256 fingerprint (lowercase hex) of a certificate's DER. */
export async function fingerprint(cert: x509.X509Certificate): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", cert.rawData);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `cert` was signed by `ca` and is valid at `date`. */
export async function issuedBy(
  cert: x509.X509Certificate,
  ca: DevCa,
  date: Date,
): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: ca.cert.publicKey, date });
  } catch {
    return false;
  }
}
