/**
 * Whether a private key belongs to a certificate without an X.509 library: loading the identity at
 * every start must not pull one in (see certificates.ts for the full checks).
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

/** One DER element at `at`: its tag and where its content starts and ends; `null` past the end. */
function derElement(
  der: Uint8Array,
  at: number,
): { tag: number; start: number; end: number } | null {
  if (at + 2 > der.length) return null;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 3 || start + octets > der.length) return null;
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[start + i]!;
    start += octets;
  }
  return start + length > der.length ? null : { tag: der[at]!, start, end: start + length };
}

/** AlgorithmIdentifier content of an EC P-256 key: id-ecPublicKey, prime256v1. */
const EC_P256_ALGORITHM = [
  0x06,
  0x07,
  0x2a,
  0x86,
  0x48,
  0xce,
  0x3d,
  0x02,
  0x01,
  0x06,
  0x08,
  0x2a,
  0x86,
  0x48,
  0xce,
  0x3d,
  0x03,
  0x01,
  0x07,
];

/**
 * The public point `04 || x || y` a PKCS#8 P-256 key carries in its ECPrivateKey `publicKey` [1]
 * field (keys WebCrypto and OpenSSL export have it), or `null` when the key has none or is not
 * shaped like one.
 */
export function embeddedPublicPoint(keyDer: Uint8Array): Uint8Array | null {
  const outer = derElement(keyDer, 0);
  if (outer?.tag !== 0x30 || outer.end !== keyDer.length) return null;
  const version = derElement(keyDer, outer.start);
  if (version?.tag !== 0x02) return null;
  const algorithm = derElement(keyDer, version.end);
  if (
    algorithm?.tag !== 0x30 || algorithm.end - algorithm.start !== EC_P256_ALGORITHM.length ||
    EC_P256_ALGORITHM.some((b, i) => keyDer[algorithm.start + i] !== b)
  ) return null;
  const wrapped = derElement(keyDer, algorithm.end);
  if (wrapped?.tag !== 0x04) return null;
  const ecKey = derElement(keyDer, wrapped.start);
  if (ecKey?.tag !== 0x30 || ecKey.end !== wrapped.end) return null;
  const ecVersion = derElement(keyDer, ecKey.start);
  if (ecVersion?.tag !== 0x02) return null;
  const scalar = derElement(keyDer, ecVersion.end);
  if (scalar?.tag !== 0x04 || scalar.end - scalar.start !== 32) return null;
  for (let at = scalar.end; at < ecKey.end;) {
    const field = derElement(keyDer, at);
    if (field === null || field.end > ecKey.end) return null;
    if (field.tag === 0xa1) {
      const bits = derElement(keyDer, field.start);
      // BIT STRING: no unused bits, then the uncompressed point.
      if (bits?.tag !== 0x03 || bits.end - bits.start !== 66 || keyDer[bits.start] !== 0) {
        return null;
      }
      if (keyDer[bits.start + 1] !== 0x04) return null;
      return keyDer.slice(bits.start + 1, bits.end);
    }
    at = field.end;
  }
  return null;
}

/**
 * Whether a PKCS#8 P-256 private key belongs to a certificate, without an X.509 library: the key's
 * public point must appear in the certificate as a SubjectPublicKeyInfo BIT STRING
 * `03 42 00 04 || x || y`. The point is the one the key file carries next to its scalar when it
 * has one (every key this agent generates does): reading it costs no WebCrypto key import, whose
 * EC code would otherwise stay mapped in a steady `run` for this one check at start (about 1 MiB,
 * docs/footprint.md "Workarounds"). A
 * key file without it is imported through WebCrypto, which derives the point. The scalar itself is
 * proven at its first use (the TLS handshake or the renewal's CSR signature).
 */
export async function keyMatchesCertificate(
  privateKeyPem: string,
  certificatePem: string,
): Promise<"match" | "mismatch" | "bad-key" | "bad-certificate"> {
  const keyDer = decodePem(privateKeyPem, "PRIVATE KEY");
  if (keyDer === null) return "bad-key";
  let point = embeddedPublicPoint(keyDer);
  if (point === null) {
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
    point = new Uint8Array([0x04, ...base64UrlDecode(jwk.x), ...base64UrlDecode(jwk.y)]);
  }
  const certDer = decodePem(certificatePem, "CERTIFICATE");
  if (certDer === null) return "bad-certificate";
  return indexOfBytes(certDer, new Uint8Array([0x03, 0x42, 0x00, ...point])) >= 0
    ? "match"
    : "mismatch";
}
