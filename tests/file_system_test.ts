import assert from "node:assert/strict";
import * as nodePath from "node:path";
import {
  basename,
  denoFileSystem,
  dirname,
  entryKindProblem,
  join,
  lstatOrNull,
  replaceFileSync,
  resolve,
  tempFilePattern,
  writeAllSync,
  writeFileAtomic,
} from "../src/file_system.ts";
import { UsageError } from "../src/errors.ts";
import { tempDir } from "./_support/helpers.ts";

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

/**
 * A separate process that, as fast as it can, replaces every temp name `name` gets in `dir` by a
 * symbolic link to `victim` (atomically, with rename over it): the local user of issue 27 #1.
 */
function startSymlinkAttacker(dir: string, name: string, victim: string): Deno.ChildProcess {
  const script = `
    const dir = ${JSON.stringify(dir)};
    const temp = new RegExp(${JSON.stringify(tempFilePattern(name).source)});
    let n = 0;
    console.log("ready");
    for (;;) {
      for (const entry of Deno.readDirSync(dir)) {
        if (!temp.test(entry.name) || entry.isSymlink) continue;
        const link = dir + "/.attacker-" + n++;
        try {
          Deno.symlinkSync(${JSON.stringify(victim)}, link);
          Deno.renameSync(link, dir + "/" + entry.name);
        } catch {
          try { Deno.removeSync(link); } catch { /* raced */ }
        }
      }
    }
  `;
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
}

Deno.test({
  name: "file_system writes never change the mode of a file a local user links at their temp name",
  ignore: Deno.build.os === "windows",
  async fn() {
    // Fails on 32b58ff: it chmod-ed the temp file by name after closing it, so root set the mode
    // of whatever the name pointed to by then (/etc/shadow in the report).
    await using dir = await tempDir();
    const victim = join(dir.path, "victim");
    const shared = join(dir.path, "shared");
    await Deno.mkdir(shared);
    for (
      const [label, write] of [
        ["replaceFileSync", (p: string) => replaceFileSync(p, "metric 1\n", 0o644)],
        ["writeFileAtomic", (p: string) => writeFileAtomic(p, "metric 1\n", 0o644)],
      ] as const
    ) {
      await Deno.writeTextFile(victim, "secret\n", { mode: 0o600 });
      await Deno.chmod(victim, 0o600);
      const attacker = startSymlinkAttacker(shared, "m.prom", victim);
      const reader = attacker.stdout.getReader();
      try {
        assert.equal(new TextDecoder().decode((await reader.read()).value).trim(), "ready");
        let linked = 0;
        const deadline = Date.now() + 4_000;
        for (let i = 0; Date.now() < deadline; i++) {
          try {
            await write(join(shared, "m.prom"));
          } catch {
            // The attacker may win the rename; the write then fails or lands as its symlink.
          }
          if (Deno.lstatSync(join(shared, "m.prom")).isSymlink) linked++;
          assert.equal(Deno.statSync(victim).mode! & 0o777, 0o600, `${label}, write ${i}`);
          if (i % 64 === 0) await new Promise((r) => setTimeout(r, 0));
        }
        assert.equal(await Deno.readTextFile(victim), "secret\n", label);
        assert.ok(linked > 0, `${label}: the attacker never got a link in: the race was not run`);
      } finally {
        attacker.kill("SIGKILL");
        reader.releaseLock();
        await attacker.stdout.cancel();
        await attacker.status;
      }
    }
  },
});
