import assert from "node:assert/strict";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  CertificateCheckError,
  createCsr,
  exportPrivateKeyPem,
  generateAgentKeyPair,
  parseCertificate,
  splitPemBundle,
  verifyIssuedCertificate,
} from "../src/trust/certificates.ts";
import { keyMatchesCertificate } from "../src/trust/key_match.ts";
import { createDevCa, issueAgentCertificate, parseCsr } from "../tasks/dev_platform/dev_ca.ts";
import { OPENSSL_BIN, opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";
import { rejectsWith, skipWithout } from "./_support/helpers.ts";

const HOUR = 3_600_000;

async function issueFor(
  keys: CryptoKeyPair,
  opts: { notBefore?: Date; notAfter?: Date; ca?: Awaited<ReturnType<typeof createDevCa>> } = {},
) {
  const ca = opts.ca ?? await createDevCa();
  const csr = await parseCsr(await createCsr(keys, "host-1"));
  const now = Date.now();
  const cert = await issueAgentCertificate(ca, {
    agentId: "agent-1",
    csr,
    notBefore: opts.notBefore ?? new Date(now - HOUR),
    notAfter: opts.notAfter ?? new Date(now + 24 * HOUR),
  });
  return { ca, certPem: cert.toString("pem") };
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  return (await rejectsWith(promise, CertificateCheckError)).message;
}

Deno.test("agent key is an extractable ECDSA P-256 pair stored as PKCS#8 PEM", async () => {
  const keys = await generateAgentKeyPair();
  const algorithm = keys.privateKey.algorithm as EcKeyAlgorithm;
  assert.equal(algorithm.name, "ECDSA");
  assert.equal(algorithm.namedCurve, "P-256");
  const pem = await exportPrivateKeyPem(keys.privateKey);
  assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
  for (const line of pem.trim().split("\n")) assert.ok(line.length <= 64);
});

Deno.test("CSR carries CN = hostname, our public key, and a valid SHA-256 signature", async () => {
  const keys = await generateAgentKeyPair();
  const pem = await createCsr(keys, "web-01.example.internal");
  const csr = new x509.Pkcs10CertificateRequest(pem);
  assert.deepEqual(csr.subjectName.getField("CN"), ["web-01.example.internal"]);
  assert.equal((csr.signatureAlgorithm as EcdsaParams & { hash: Algorithm }).hash.name, "SHA-256");
  assert.ok(await csr.verify(crypto));
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  assert.deepEqual(new Uint8Array(csr.publicKey.rawData), spki);
});

Deno.test("CSR subject cannot be widened by a hostname with DN syntax", async () => {
  const keys = await generateAgentKeyPair();
  const csr = new x509.Pkcs10CertificateRequest(await createCsr(keys, "evil,O=Platform Admins"));
  assert.deepEqual(csr.subjectName.getField("CN"), ["evil,O=Platform Admins"]);
  assert.deepEqual(csr.subjectName.getField("O"), []);
});

Deno.test("splitPemBundle keeps every certificate and drops text and other blocks", async () => {
  const a = (await createDevCa({ commonName: "A" })).certPem.trim();
  const b = (await createDevCa({ commonName: "B" })).certPem.trim();
  const bundle = [
    "# corporate roots",
    a.replaceAll("\n", "\r\n"),
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    "subject=CN = B",
    b,
  ].join("\n");
  const pems = splitPemBundle(bundle);
  assert.equal(pems.length, 2);
  assert.equal(pems[0], `${a}\n`);
  assert.equal(pems[1], `${b}\n`);
  assert.deepEqual(splitPemBundle("no certificates here"), []);
});

Deno.test("parseCertificate explains what is wrong instead of throwing", () => {
  assert.equal(parseCertificate("hello"), "not a PEM certificate");
  const bad = parseCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  assert.equal(typeof bad, "string");
  assert.match(bad as string, /^not a valid certificate/);
});

Deno.test("verifyIssuedCertificate accepts a certificate for our key from a returned CA", async () => {
  const keys = await generateAgentKeyPair();
  const { ca, certPem } = await issueFor(keys);
  const result = await verifyIssuedCertificate({
    certificatePem: certPem,
    caCertificatePems: [ca.certPem],
    publicKey: keys.publicKey,
    now: Date.now(),
  });
  assert.ok(result.notAfter.getTime() > Date.now());
  assert.ok(result.notBefore.getTime() < Date.now());
});

Deno.test("verifyIssuedCertificate refuses a certificate issued for another key", async () => {
  const ours = await generateAgentKeyPair();
  const theirs = await generateAgentKeyPair();
  const { ca, certPem } = await issueFor(theirs);
  const message = await rejection(verifyIssuedCertificate({
    certificatePem: certPem,
    caCertificatePems: [ca.certPem],
    publicKey: ours.publicKey,
    now: Date.now(),
  }));
  assert.match(message, /issued for another key/);
});

Deno.test("verifyIssuedCertificate tolerates 5 minutes of skew and says clock skew beyond", async () => {
  const keys = await generateAgentKeyPair();
  const now = Date.now();
  const future = await issueFor(keys, {
    notBefore: new Date(now + 4 * 60_000),
    notAfter: new Date(now + 24 * HOUR),
  });
  await verifyIssuedCertificate({
    certificatePem: future.certPem,
    caCertificatePems: [future.ca.certPem],
    publicKey: keys.publicKey,
    now,
  });
  const tooFar = await issueFor(keys, {
    notBefore: new Date(now + 10 * 60_000),
    notAfter: new Date(now + 24 * HOUR),
  });
  const early = await rejection(verifyIssuedCertificate({
    certificatePem: tooFar.certPem,
    caCertificatePems: [tooFar.ca.certPem],
    publicKey: keys.publicKey,
    now,
  }));
  assert.match(early, /not valid until .*10 minutes from now \(clock skew\?/);

  const expired = await issueFor(keys, {
    notBefore: new Date(now - 48 * HOUR),
    notAfter: new Date(now - 6 * 60_000),
  });
  const late = await rejection(verifyIssuedCertificate({
    certificatePem: expired.certPem,
    caCertificatePems: [expired.ca.certPem],
    publicKey: keys.publicKey,
    now,
  }));
  assert.match(late, /expired at .*6 minutes ago \(clock skew\?/);
  await verifyIssuedCertificate({
    certificatePem: expired.certPem,
    caCertificatePems: [expired.ca.certPem],
    publicKey: keys.publicKey,
    now: now - 2 * 60_000,
  });
});

Deno.test("verifyIssuedCertificate refuses unparsable CA certificates and a foreign issuer", async () => {
  const keys = await generateAgentKeyPair();
  const { ca, certPem } = await issueFor(keys);
  const garbage = await rejection(verifyIssuedCertificate({
    certificatePem: certPem,
    caCertificatePems: [ca.certPem, "not a pem"],
    publicKey: keys.publicKey,
    now: Date.now(),
  }));
  assert.equal(garbage, "ca_certificates[1] is not a PEM certificate");

  const other = await createDevCa({ commonName: "Other CA" });
  const foreign = await rejection(verifyIssuedCertificate({
    certificatePem: certPem,
    caCertificatePems: [other.certPem],
    publicKey: keys.publicKey,
    now: Date.now(),
  }));
  assert.match(foreign, /not signed by any of the ca_certificates/);

  const notCert = await rejection(verifyIssuedCertificate({
    certificatePem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    caCertificatePems: [ca.certPem],
    publicKey: keys.publicKey,
    now: Date.now(),
  }));
  assert.match(notCert, /^certificate is not a valid certificate/);
});

Deno.test("keyMatchesCertificate (WebCrypto only) agrees with the X.509 check", async () => {
  const keys = await generateAgentKeyPair();
  const other = await generateAgentKeyPair();
  const { certPem } = await issueFor(keys);
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  assert.equal(await keyMatchesCertificate(keyPem, certPem), "match");
  assert.equal(
    await keyMatchesCertificate(await exportPrivateKeyPem(other.privateKey), certPem),
    "mismatch",
  );
  assert.equal(await keyMatchesCertificate("garbage", certPem), "bad-key");
  assert.equal(await keyMatchesCertificate(keyPem, "garbage"), "bad-certificate");
});

// Chains through an intermediate CA, judged against a PKI made by the openssl CLI (tests/_support/openssl_pki.ts).
const HAVE_OPENSSL = opensslAvailable();
if (!HAVE_OPENSSL) {
  console.error(
    `\n!!! SKIPPING the certificate chain tests of tests/certificates_test.ts: openssl is not installed at ${OPENSSL_BIN}.\n`,
  );
}

/** The openssl PKI and a fresh agent key with a CSR for it. */
async function chainCase() {
  const pki = await sharedOpensslPki();
  const keys = await generateAgentKeyPair();
  const csr = await createCsr(keys, "host-1");
  const verify = (certificatePem: string, now = Date.parse("2030-01-01T00:00:00Z")) =>
    verifyIssuedCertificate({
      certificatePem,
      caCertificatePems: [pki.root.certPem],
      publicKey: keys.publicKey,
      now,
    });
  return { pki, keys, csr, verify };
}

Deno.test({
  name:
    "verifyIssuedCertificate accepts a leaf + intermediate chain up to a root in ca_certificates",
  ignore: skipWithout(HAVE_OPENSSL),
  async fn() {
    const { pki, keys, csr, verify } = await chainCase();
    const leaf = await pki.signAgentCsr(csr, "issuing");
    const verified = await verify(leaf + pki.issuing.certPem);
    assert.equal(verified.leafPem, leaf);
    assert.deepEqual(verified.intermediatePems, [pki.issuing.certPem]);
    assert.equal(verified.notAfter.toISOString(), "2099-12-31T00:00:00.000Z");
    // The root sent along at the end is allowed, and not stored as an intermediate.
    const withRoot = await verify(leaf + pki.issuing.certPem + pki.root.certPem);
    assert.deepEqual(withRoot.intermediatePems, [pki.issuing.certPem]);
    // The issuing CA in ca_certificates instead of the chain: still presented with the leaf, so
    // that an edge trusting only the root can verify the agent.
    const anchored = await verifyIssuedCertificate({
      certificatePem: leaf,
      caCertificatePems: [pki.issuing.certPem, pki.root.certPem],
      publicKey: keys.publicKey,
      now: Date.parse("2030-01-01T00:00:00Z"),
    });
    assert.deepEqual(anchored.intermediatePems, [pki.issuing.certPem]);
    const pinnedIssuing = await verifyIssuedCertificate({
      certificatePem: leaf,
      caCertificatePems: [pki.issuing.certPem],
      publicKey: keys.publicKey,
      now: Date.parse("2030-01-01T00:00:00Z"),
    });
    assert.deepEqual(pinnedIssuing.intermediatePems, []);
    // A leaf issued by the root itself has no intermediates.
    const direct = await verify(await pki.signAgentCsr(csr, "root"));
    assert.deepEqual(direct.intermediatePems, []);
  },
});

Deno.test({
  name: "verifyIssuedCertificate names each way a chain is broken",
  ignore: skipWithout(HAVE_OPENSSL),
  async fn() {
    const { pki, csr, verify } = await chainCase();
    const leaf = await pki.signAgentCsr(csr, "issuing");
    assert.equal(
      await rejection(verify(pki.issuing.certPem + leaf)),
      "certificate chain is in the wrong order: this agent's certificate is entry 2, it must come first (leaf, then its issuer, up to the root)",
    );
    const deep = await pki.signAgentCsr(csr, "toodeep");
    assert.equal(
      await rejection(verify(deep + pki.issuing.certPem + pki.tooDeep.certPem)),
      "certificate chain is in the wrong order: the issuer of the leaf is entry 3, it must be entry 2 (leaf, then its issuer, up to the root)",
    );
    assert.equal(
      await rejection(verify(leaf)),
      'certificate is not signed by any of the ca_certificates and its issuer "CN=Test Issuing CA" is not in the chain: a missing intermediate CA (the platform must send it after the leaf) or ca_certificates of another PKI',
    );
    assert.equal(
      await rejection(verify(deep + pki.tooDeep.certPem)),
      'certificate chain is missing an intermediate: intermediate "CN=Test Sub-Issuing CA" is issued by "CN=Test Issuing CA", which is neither in the chain nor one of the ca_certificates',
    );
    assert.equal(
      await rejection(verify(await pki.signAgentCsr(csr, "notca") + pki.notCa.certPem)),
      'intermediate "CN=Test Not A CA" is not a CA (no basicConstraints CA:true), so it cannot issue certificates; the platform\'s PKI must issue from a CA certificate',
    );
    assert.match(
      await rejection(verify(await pki.signAgentCsr(csr, "expired") + pki.expired.certPem)),
      /^intermediate "CN=Test Expired CA" expired at 2021-01-01T00:00:00\.000Z, \d+ minutes ago \(clock skew\? check this host's clock\)$/,
    );
    assert.equal(
      await rejection(verify(deep + pki.tooDeep.certPem + pki.issuing.certPem)),
      'path length exceeded: intermediate "CN=Test Issuing CA" allows 0 intermediate CA(s) below it (pathlen:0), the chain has 1',
    );
  },
});

Deno.test({
  name: "verifyIssuedCertificate applies the clock skew allowance to intermediates too",
  ignore: skipWithout(HAVE_OPENSSL),
  async fn() {
    const { pki, csr, verify } = await chainCase();
    // The leaf is valid from 2019, its issuer only from 2020-01-01.
    const chain = await pki.signAgentCsr(csr, "issuing") + pki.issuing.certPem;
    const start = Date.parse("2020-01-01T00:00:00Z");
    await verify(chain, start - 4 * 60_000);
    assert.equal(
      await rejection(verify(chain, start - 10 * 60_000)),
      'intermediate "CN=Test Issuing CA" is not valid until 2020-01-01T00:00:00.000Z, 10 minutes from now (clock skew? check this host\'s clock)',
    );
  },
});

Deno.test({
  name: "verifyIssuedCertificate refuses a leaf not meant for client authentication",
  ignore: skipWithout(HAVE_OPENSSL),
  async fn() {
    const { pki, csr, verify } = await chainCase();
    const leaf = await pki.signAgentCsr(csr, "issuing", { extendedKeyUsage: "serverAuth" });
    assert.equal(
      await rejection(verify(leaf + pki.issuing.certPem)),
      "certificate is not for client authentication (its extendedKeyUsage lacks clientAuth)",
    );
  },
});
