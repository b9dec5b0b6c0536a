/**
 * A minimal zip writer (deflated regular files, UTF-8 names, no zip64) with the deflate of
 * `CompressionStream("deflate-raw")`: what Windows Explorer, `Expand-Archive` and `unzip` read.
 *
 * @module
 */
import { type ArchiveEntry, compressBytes, concatBytes } from "./archive_entry.ts";

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, the one zip and gzip use) of `data`. */
function crc32(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** MS-DOS date and time (2-second resolution, from 1980) of `ms`, in UTC. */
function dosDateTime(ms: number): { date: number; time: number } {
  const d = new Date(Math.max(ms, Date.UTC(1980, 0, 1)));
  return {
    date: ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
  };
}

const encoder = new TextEncoder();
/** General purpose flag bit 11: the name is UTF-8. */
const UTF8_FLAG = 0x0800;
const DEFLATE = 8;

/**
 * The fields a local file header (at offset 4) and a central directory header (at offset 6)
 * share: version needed, flags, method, time, date, CRC-32, sizes and the name's length.
 */
function writeCommonFields(
  view: DataView,
  at: number,
  f: {
    time: number;
    date: number;
    crc: number;
    compressed: number;
    size: number;
    name: Uint8Array;
  },
): void {
  view.setUint16(at, 20, true); // version needed: 2.0 (deflate)
  view.setUint16(at + 2, UTF8_FLAG, true);
  view.setUint16(at + 4, DEFLATE, true);
  view.setUint16(at + 6, f.time, true);
  view.setUint16(at + 8, f.date, true);
  view.setUint32(at + 10, f.crc, true);
  view.setUint32(at + 14, f.compressed, true);
  view.setUint32(at + 18, f.size, true);
  view.setUint16(at + 22, f.name.length, true);
}

/** `entries` as a `.zip`, each entry deflated. */
export async function zipArchive(
  entries: readonly ArchiveEntry[],
  mtimeMs: number,
): Promise<Uint8Array> {
  if (entries.length > 0xffff) throw new RangeError("too many zip entries");
  const { date, time } = dosDateTime(mtimeMs);
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = encoder.encode(entry.name);
    const compressed = await compressBytes(entry.data, "deflate-raw");
    const crc = crc32(entry.data);
    if (offset + compressed.length + 30 + name.length > 0xffffffff) {
      throw new RangeError("zip archive too large");
    }
    const fields = {
      time,
      date,
      crc,
      compressed: compressed.length,
      size: entry.data.length,
      name,
    };
    const local = new Uint8Array(30 + name.length);
    const l = new DataView(local.buffer);
    l.setUint32(0, 0x04034b50, true);
    writeCommonFields(l, 4, fields);
    l.setUint16(28, 0, true);
    local.set(name, 30);

    const central = new Uint8Array(46 + name.length);
    const c = new DataView(central.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, (3 << 8) | 20, true); // made by: Unix, 2.0 (so the mode below is read)
    writeCommonFields(c, 6, fields);
    // extra, comment, disk number start, internal attributes: 0
    c.setUint32(38, (0o100600 << 16) >>> 0, true); // external attributes: regular file, 0600
    c.setUint32(42, offset, true);
    central.set(name, 46);

    locals.push(local, compressed);
    centrals.push(central);
    offset += local.length + compressed.length;
  }
  const directory = concatBytes(centrals);
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, entries.length, true);
  e.setUint16(10, entries.length, true);
  e.setUint32(12, directory.length, true);
  e.setUint32(16, offset, true);
  return concatBytes([...locals, directory, end]);
}
