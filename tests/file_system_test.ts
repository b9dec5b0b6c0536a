import assert from "node:assert/strict";
import * as nodePath from "node:path";
import {
  basename,
  denoFileSystem,
  dirname,
  entryKindProblem,
  join,
  lstatOrNull,
  resolve,
  writeAllSync,
  writeFileAtomic,
} from "../src/file_system.ts";
import { UsageError } from "../src/errors.ts";

Deno.test("file_system path helpers agree with node:path on state paths", () => {
  for (const parts of [["/a", "b"], ["/a/", "b"], ["a", "b", "c"], ["/", "x"], ["a//b", "/c"]]) {
    assert.equal(join(...parts), nodePath.join(...parts), JSON.stringify(parts));
  }
  for (const p of ["/a/b", "/a/b/", "a", "/a", "/", "a/b", "/var/lib/x/identity.json"]) {
    assert.equal(dirname(p), nodePath.dirname(p), `dirname ${p}`);
    assert.equal(basename(p), nodePath.basename(p), `basename ${p}`);
  }
});

Deno.test(
  "file_system resolve agrees with node:path resolve on POSIX state paths",
  { ignore: Deno.build.os === "windows" },
  () => {
    const paths = [
      "/var/lib/oneconnect",
      "/var/lib/oneconnect/",
      "/var//lib/./oneconnect/../x",
      "/..",
      "/../a/..",
      "/",
      "//a",
      "state",
      "./state/",
      "../state",
      "../../../../../../..",
      "a/./b/../../c",
      "",
      ".",
    ];
    for (const p of paths) assert.equal(resolve(p), nodePath.resolve(p), `resolve ${p}`);
    assert.equal(resolve("x/../y", () => "/home/u"), "/home/u/y");
  },
);

Deno.test("writeAllSync loops until a writer that takes a few bytes at a time has all of them", () => {
  const taken: number[] = [];
  const writer = {
    writeSync: (p: Uint8Array) => {
      const n = Math.min(3, p.length);
      taken.push(...p.subarray(0, n));
      return n;
    },
  };
  writeAllSync(writer, "héllo, wörld\n");
  assert.equal(new TextDecoder().decode(new Uint8Array(taken)), "héllo, wörld\n");
});

Deno.test("lstatOrNull: null for a missing path, the link itself for a symlink, UsageError else", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await lstatOrNull(denoFileSystem, join(dir, "missing")), null);
    await Deno.writeTextFile(join(dir, "file"), "x");
    const file = await lstatOrNull(denoFileSystem, join(dir, "file"));
    assert.equal(file?.isFile, true);
    assert.equal(entryKindProblem(file!, "file"), null);
    assert.equal(entryKindProblem(file!, "directory"), "other");
    if (Deno.build.os !== "windows") {
      await Deno.symlink(join(dir, "file"), join(dir, "link"));
      const link = await lstatOrNull(denoFileSystem, join(dir, "link"));
      assert.equal(entryKindProblem(link!, "file"), "symlink");
    }
    const denied = { lstat: () => Promise.reject(new Deno.errors.PermissionDenied("denied")) };
    await assert.rejects(
      lstatOrNull(denied, "/x/y"),
      (e) =>
        e instanceof UsageError &&
        e.message ===
          'Cannot inspect "/x/y": permission denied (this user cannot look inside "/x", so whether it exists is unknown); run as root (e.g. with sudo), or pass --state-dir with a directory this user owns',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "file_system writeFileAtomic has replaced the file before its promise is awaited",
  async () => {
    // Synchronous calls: no hop to a runtime worker thread (a wake-up each) on every heartbeat.
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, "status.json");
      await writeFileAtomic(path, "old\n", 0o600);
      const pending = writeFileAtomic(path, "new\n", 0o600);
      assert.equal(Deno.readTextFileSync(path), "new\n");
      await pending;
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["status.json"]);
      if (Deno.build.os !== "windows") assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
