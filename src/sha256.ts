/**
 * SHA-256 in lowercase hex: the host digest of heartbeats, `ca-pin`'s pins and the diagnostics'
 * certificate fingerprint. WebCrypto's digest; a TypeScript SHA-256 that kept WebCrypto off a
 * steady `run` saved 0.1-0.3 MiB, not worth its 155 lines (docs/footprint.md, "Workarounds").
 *
 * @module
 */

const encoder = new TextEncoder();

/** Lowercase hex SHA-256 of `data`; a string is hashed as its UTF-8 bytes. */
export async function sha256Hex(data: string | BufferSource): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    typeof data === "string" ? encoder.encode(data) : data,
  );
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
