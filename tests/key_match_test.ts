import assert from "node:assert/strict";
import { keyMatchesCertificate } from "../src/trust/key_match.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";

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
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", p384.privateKey));
  const p384Pem = `-----BEGIN PRIVATE KEY-----\n${
    btoa(String.fromCharCode(...der))
  }\n-----END PRIVATE KEY-----\n`;
  assert.equal(await keyMatchesCertificate(p384Pem, ca.certPem), "bad-key");
  assert.equal(await keyMatchesCertificate(ca.keyPem, "garbage"), "bad-certificate");
});
