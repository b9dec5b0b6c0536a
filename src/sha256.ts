/**
 * SHA-256 in lowercase hex through WebCrypto: the host digest of heartbeats and `ca-pin`'s pins.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Lowercase hex SHA-256 of `data`; a string is hashed as its UTF-8 bytes. */
export async function sha256Hex(data: string | BufferSource): Promise<string> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
