/**
 * Whether a private key belongs to a certificate, with WebCrypto only: loading the identity at
 * every start must not pull in an X.509 library (see certificates.ts for the full checks).
 */

/** Decodes the first PEM block with `label`, or `null` when there is none or it is not base64. */
function decodePem(pem: string, label: string): Uint8Array<ArrayBuffer> | null {
  const match = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`)
    .exec(pem);
  if (!match) return null;
  try {
    const binary = atob(match[1]!.replace(/\s+/g, ""));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

function base64UrlDecode(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * Whether a PKCS#8 P-256 private key belongs to a certificate, using WebCrypto only (so loading the
 * identity never pulls in an X.509 library): the key's public point must appear in the certificate
 * as a SubjectPublicKeyInfo BIT STRING `03 42 00 04 || x || y`.
 */
export async function keyMatchesCertificate(
  privateKeyPem: string,
  certificatePem: string,
): Promise<"match" | "mismatch" | "bad-key" | "bad-certificate"> {
  const keyDer = decodePem(privateKeyPem, "PRIVATE KEY");
  if (keyDer === null) return "bad-key";
  let jwk: JsonWebKey;
  try {
    const key = await crypto.subtle.importKey(
      "pkcs8",
      keyDer,
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign"],
    );
    jwk = await crypto.subtle.exportKey("jwk", key);
  } catch {
    return "bad-key";
  }
  if (!jwk.x || !jwk.y) return "bad-key";
  const certDer = decodePem(certificatePem, "CERTIFICATE");
  if (certDer === null) return "bad-certificate";
  const x = base64UrlDecode(jwk.x);
  const y = base64UrlDecode(jwk.y);
  const point = new Uint8Array([0x03, 0x42, 0x00, 0x04, ...x, ...y]);
  return indexOfBytes(certDer, point) >= 0 ? "match" : "mismatch";
}
