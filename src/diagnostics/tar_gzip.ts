/**
 * A minimal POSIX ustar writer (regular files only) gzipped by `CompressionStream("gzip")`: what
 * `tar -xzf` on any Linux or macOS host reads. Names longer than 100 bytes are split into the
 * ustar prefix field at a `/`.
 *
 * @module
 */
import { type ArchiveEntry, compressBytes, concatBytes } from "./archive_entry.ts";

const BLOCK = 512;
const encoder = new TextEncoder();

function writeString(header: Uint8Array, offset: number, length: number, text: string): void {
  const bytes = encoder.encode(text);
  if (bytes.length > length) throw new RangeError(`tar field too long: ${JSON.stringify(text)}`);
  header.set(bytes, offset);
}

/** A NUL-terminated octal number filling `length` bytes, as ustar numeric fields are. */
function writeOctal(header: Uint8Array, offset: number, length: number, value: number): void {
  writeString(header, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

/** Splits `name` into ustar `prefix` (≤155 bytes) and `name` (≤100 bytes) at a `/`. */
function splitName(name: string): { prefix: string; name: string } {
  if (encoder.encode(name).length <= 100) return { prefix: "", name };
  for (let i = name.indexOf("/"); i >= 0; i = name.indexOf("/", i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(rest).length <= 100) {
      return { prefix, name: rest };
    }
  }
  throw new RangeError(`tar entry name too long: ${JSON.stringify(name)}`);
}

/** The 512-byte ustar header of a regular file. */
function tarHeader(
  name: string,
  size: number,
  mtimeSeconds: number,
  mode = 0o600,
): Uint8Array {
  const header = new Uint8Array(BLOCK);
  const split = splitName(name);
  writeString(header, 0, 100, split.name);
  writeOctal(header, 100, 8, mode);
  writeOctal(header, 108, 8, 0); // uid
  writeOctal(header, 116, 8, 0); // gid
  writeOctal(header, 124, 12, size);
  writeOctal(header, 136, 12, Math.max(0, Math.floor(mtimeSeconds)));
  header.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  header[156] = 0x30; // typeflag '0': regular file
  writeString(header, 257, 6, "ustar\0");
  writeString(header, 263, 2, "00");
  writeString(header, 345, 155, split.prefix);
  let sum = 0;
  for (const byte of header) sum += byte;
  writeString(header, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return header;
}

/** The uncompressed ustar archive of `entries`, ending with the two zero blocks. */
function tarArchive(entries: readonly ArchiveEntry[], mtimeMs: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    parts.push(tarHeader(entry.name, entry.data.length, mtimeMs / 1000), entry.data);
    const padding = (BLOCK - (entry.data.length % BLOCK)) % BLOCK;
    if (padding > 0) parts.push(new Uint8Array(padding));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return concatBytes(parts);
}

/** `entries` as a `.tar.gz`. */
export function tarGzip(entries: readonly ArchiveEntry[], mtimeMs: number): Promise<Uint8Array> {
  return compressBytes(tarArchive(entries, mtimeMs), "gzip");
}
