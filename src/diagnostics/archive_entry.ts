/**
 * What the bundle's archive writers (`tar_gzip.ts`, `zip.ts`) take: named files, and the one way
 * they compress, WebCrypto-style through the runtime's `CompressionStream` (no dependency).
 *
 * @module
 */

/** One file of an archive: a relative `/`-separated name and its bytes. */
export interface ArchiveEntry {
  name: string;
  data: Uint8Array;
}

/** The archive formats: `.tar.gz` on Linux and macOS, `.zip` on Windows. */
export type ArchiveFormat = "tar.gz" | "zip";

/** `data` compressed with the runtime's `CompressionStream` in `format`. */
export async function compressBytes(
  data: Uint8Array,
  format: "gzip" | "deflate-raw",
): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
