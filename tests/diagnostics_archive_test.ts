import assert from "node:assert/strict";
import { join } from "node:path";
import { tarGzip } from "../src/diagnostics/tar_gzip.ts";
import { zipArchive } from "../src/diagnostics/zip.ts";
import { archiveBundle, archiveFormat, bundleBaseName } from "../src/diagnostics/bundle.ts";
import type { ArchiveEntry } from "../src/diagnostics/archive_entry.ts";
import { findTool, skipWithout, tempDir } from "./_support/helpers.ts";

const TAR = findTool("tar", "/usr/bin/tar", "/bin/tar");
const UNZIP = findTool("unzip", "/usr/bin/unzip");

const encoder = new TextEncoder();
const LONG_DIR = `oneconnect-diagnostics-${"a".repeat(70)}-20261206T120000Z`;

function sampleEntries(): ArchiveEntry[] {
  const binary = new Uint8Array(70_000);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7919) & 0xff;
  return [
    { name: "bundle/manifest.json", data: encoder.encode('{"ok":true}\n') },
    { name: "bundle/empty.txt", data: new Uint8Array(0) },
    { name: "bundle/exact.bin", data: new Uint8Array(512).fill(0x41) },
    { name: "bundle/binary.bin", data: binary },
    { name: "bundle/ünïcode-名前.txt", data: encoder.encode("héllo\n") },
    // Longer than ustar's 100-byte name field: goes through the prefix field.
    { name: `${LONG_DIR}/${"b".repeat(60)}.json`, data: encoder.encode("{}\n") },
  ];
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  assert.ok(out.success, `${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

async function assertExtracted(dir: string, entries: ArchiveEntry[]): Promise<void> {
  for (const entry of entries) {
    const data = await Deno.readFile(join(dir, entry.name));
    assert.deepEqual(data, entry.data, entry.name);
  }
}

Deno.test("tar.gz writer: GNU tar lists and extracts every entry byte for byte", {
  ignore: skipWithout(TAR !== null),
}, async () => {
  await using dir = await tempDir("oneconnect-tar-test-");
  const entries = sampleEntries();
  const mtime = Date.UTC(2026, 11, 6, 12, 0, 0);
  await Deno.writeFile(join(dir.path, "b.tar.gz"), await tarGzip(entries, mtime));
  const listing = await run(TAR!, ["--utc", "-tvzf", "b.tar.gz"], dir.path);
  const lines = listing.trim().split("\n");
  assert.equal(lines.length, entries.length, listing);
  for (const line of lines) assert.match(line, /^-rw------- 0\/0 .* 2026-12-06 12:00 /);
  await Deno.mkdir(join(dir.path, "x"));
  await run(TAR!, ["-xzf", "../b.tar.gz"], join(dir.path, "x"));
  await assertExtracted(join(dir.path, "x"), entries);
});

Deno.test(
  "tar.gz writer: an empty archive is valid",
  { ignore: skipWithout(TAR !== null) },
  async () => {
    await using dir = await tempDir("oneconnect-tar-test-");
    await Deno.writeFile(join(dir.path, "e.tar.gz"), await tarGzip([], 0));
    assert.equal(await run(TAR!, ["-tzf", "e.tar.gz"], dir.path), "");
  },
);

Deno.test("tar.gz writer: refuses a name that fits neither ustar field", async () => {
  await assert.rejects(
    async () => await tarGzip([{ name: "x".repeat(120), data: new Uint8Array(1) }], 0),
    RangeError,
  );
});

Deno.test("zip writer: CRC-32 matches the standard check value", async () => {
  // The CRC-32 field of the first local file header (offset 14).
  const crcOf = async (data: Uint8Array) => {
    const zip = await zipArchive([{ name: "check", data }], Date.UTC(2026, 11, 6, 12, 0, 0));
    return new DataView(zip.buffer, zip.byteOffset).getUint32(14, true);
  };
  assert.equal(await crcOf(encoder.encode("123456789")), 0xcbf43926);
  assert.equal(await crcOf(new Uint8Array(0)), 0);
});

Deno.test("zip writer: Info-ZIP unzip tests and extracts every entry byte for byte", {
  ignore: skipWithout(UNZIP !== null),
}, async () => {
  await using dir = await tempDir("oneconnect-zip-test-");
  const entries = sampleEntries();
  await Deno.writeFile(
    join(dir.path, "b.zip"),
    await zipArchive(entries, Date.UTC(2026, 11, 6, 12, 0, 0)),
  );
  const tested = await run(UNZIP!, ["-t", "b.zip"], dir.path);
  assert.match(tested, /No errors detected/);
  const listing = await run(UNZIP!, ["-Z", "-l", "b.zip"], dir.path);
  assert.match(listing, /-rw-------/);
  assert.match(listing, new RegExp(`${entries.length} files`));
  await Deno.mkdir(join(dir.path, "x"));
  await run(UNZIP!, ["-q", "../b.zip"], join(dir.path, "x"));
  await assertExtracted(join(dir.path, "x"), entries);
});

Deno.test(
  "the bundle as Windows writes it: a .zip with every entry under its folder, read by unzip",
  {
    ignore: skipWithout(UNZIP !== null),
  },
  async () => {
    await using dir = await tempDir("oneconnect-zip-test-");
    const createdMs = Date.UTC(2026, 11, 6, 12, 0, 0);
    const base = bundleBaseName("0b9f3a1c-agent", createdMs);
    assert.equal(base, "oneconnect-diagnostics-0b9f3a1c-agent-20261206T120000Z");
    assert.equal(archiveFormat("windows"), "zip");
    assert.equal(archiveFormat("linux"), "tar.gz");
    const bytes = await archiveBundle(
      {
        agentId: "0b9f3a1c-agent",
        createdMs,
        unreadable: [],
        entries: [
          { name: "manifest.json", source: "s", noSecret: "n", content: { ok: true } },
          { name: "agent_logs.txt", source: "s", noSecret: "n", content: "line\n" },
        ],
      },
      "zip",
      base,
    );
    await Deno.writeFile(join(dir.path, `${base}.zip`), bytes);
    await run(UNZIP!, ["-q", `${base}.zip`], dir.path);
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(join(dir.path, base, "manifest.json"))),
      { ok: true },
    );
    assert.equal(await Deno.readTextFile(join(dir.path, base, "agent_logs.txt")), "line\n");
  },
);
