import assert from "node:assert/strict";
import { join } from "node:path";
import { embeddedPublicPoint, keyMatchesCertificate } from "../src/trust/key_match.ts";
import { openssl, opensslAvailable } from "./_support/openssl_pki.ts";
import { pemDer, tempDir } from "./_support/helpers.ts";
import { createDevCa, toPem } from "../tasks/dev_platform/dev_ca.ts";

Deno.test("keyMatchesCertificate matches a P-256 key to its certificate and names each mismatch", async () => {
  const ca = await createDevCa();
  const other = await createDevCa();
  assert.equal(await keyMatchesCertificate(ca.keyPem, ca.certPem), "match");
  // PEM wrapped differently (CRLF, other line length) is the same key and certificate.
  const rewrapped = ca.certPem.replace(/\n/g, "\r\n");
  assert.equal(await keyMatchesCertificate(ca.keyPem, rewrapped), "match");
  assert.equal(await keyMatchesCertificate(other.keyPem, ca.certPem), "mismatch");
  assert.equal(await keyMatchesCertificate("garbage", ca.certPem), "bad-key");
  assert.equal(
    await keyMatchesCertificate(
      "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
      ca.certPem,
    ),
    "bad-key",
  );
  const p384 = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
    "sign",
  ]);
  const p384Pem = toPem(await crypto.subtle.exportKey("pkcs8", p384.privateKey), "PRIVATE KEY");
  assert.equal(await keyMatchesCertificate(p384Pem, ca.certPem), "bad-key");
  assert.equal(await keyMatchesCertificate(ca.keyPem, "garbage"), "bad-certificate");
});

Deno.test("a key whose embedded public point is not uncompressed (0x04) is a bad key, not a mismatch", async () => {
  const ca = await createDevCa();
  const der = pemDer(ca.keyPem, "PRIVATE KEY");
  const point = embeddedPublicPoint(der)!;
  // The BIT STRING of the point: 0x03 0x42 0x00, then 0x04 and X, Y.
  const at =
    der.findIndex((_, i) =>
      der[i] === 0x03 && der[i + 1] === 0x42 && der[i + 2] === 0x00 && der[i + 3] === 0x04
    ) + 3;
  for (const prefix of [0x06 | (point[64]! & 1), 0x05]) {
    const odd = der.slice();
    odd[at] = prefix;
    assert.equal(
      await keyMatchesCertificate(toPem(odd.buffer, "PRIVATE KEY"), ca.certPem),
      "bad-key",
    );
  }
});

Deno.test({
  name: "keyMatchesCertificate reads the point an openssl key carries and derives it when absent",
  ignore: !opensslAvailable(),
  fn: async () => {
    await using dir = await tempDir();
    await openssl(dir.path, [
      "ecparam",
      "-name",
      "prime256v1",
      "-genkey",
      "-noout",
      "-out",
      "ec.pem",
    ]);
    await openssl(dir.path, ["pkcs8", "-topk8", "-nocrypt", "-in", "ec.pem", "-out", "key.pem"]);
    await openssl(dir.path, ["ec", "-in", "ec.pem", "-no_public", "-out", "bare.pem"]);
    await openssl(dir.path, [
      "pkcs8",
      "-topk8",
      "-nocrypt",
      "-in",
      "bare.pem",
      "-out",
      "bare8.pem",
    ]);
    await openssl(dir.path, [
      "req",
      "-x509",
      "-new",
      "-key",
      "key.pem",
      "-subj",
      "/CN=agent",
      "-days",
      "1",
      "-out",
      "cert.pem",
    ]);
    const keyPem = await Deno.readTextFile(join(dir.path, "key.pem"));
    const barePem = await Deno.readTextFile(join(dir.path, "bare8.pem"));
    const certPem = await Deno.readTextFile(join(dir.path, "cert.pem"));

    const point = embeddedPublicPoint(pemDer(keyPem));
    assert.ok(point !== null && point.length === 65 && point[0] === 0x04);
    assert.equal(embeddedPublicPoint(pemDer(barePem)), null);
    assert.equal(await keyMatchesCertificate(keyPem, certPem), "match");
    // Without the embedded point, WebCrypto derives it from the scalar: same answer.
    assert.equal(await keyMatchesCertificate(barePem, certPem), "match");

    // The same key carrying another key's point does not match this certificate.
    const other = await createDevCa();
    const otherPoint = embeddedPublicPoint(pemDer(other.keyPem))!;
    const spliced = pemDer(keyPem);
    spliced.set(otherPoint, spliced.length - 65);
    assert.deepEqual(embeddedPublicPoint(spliced), otherPoint);
    assert.equal(
      await keyMatchesCertificate(toPem(spliced.buffer, "PRIVATE KEY"), certPem),
      "mismatch",
    );
  },
});
