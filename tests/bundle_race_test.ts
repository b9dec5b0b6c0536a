import assert from "node:assert/strict";
import { join } from "node:path";
import {
  feedStdin,
  repoPath,
  RUN_DEADLINE_MS,
  runAgent,
  tempDir,
  withDeadline,
} from "./_support/helpers.ts";
import {
  BUNDLE_DIR,
  BUNDLE_ENTRY,
  BUNDLE_STORE,
  pruneBundles,
  sourceHash,
  STAMP_FILE,
} from "../tasks/bundle.ts";
import { copyTree } from "../tasks/mutate.ts";

/** Everything `deno task bundle` and `deno task agent` need: a scratch repository of its own. */
async function scratchRepo(dir: string): Promise<string> {
  await copyTree(repoPath("src"), join(dir, "src"));
  await Deno.mkdir(join(dir, "tasks"));
  for (const file of ["deno.json", "deno.lock", "tasks/bundle.ts", "tasks/permissions.flags"]) {
    await Deno.copyFile(repoPath(file), join(dir, file));
  }
  return dir;
}

/** Runs `deno task <args>` in `root`; fails the test unless it exits 0. */
async function task(root: string, ...args: string[]): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", ...args],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await withDeadline(child, RUN_DEADLINE_MS, `deno task ${args.join(" ")}`).output();
  const dec = new TextDecoder();
  assert.equal(out.code, 0, `deno task ${args.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/** Writes through a temp file and a rename, as an editor does: a bundler never reads half. */
async function writeAtomic(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, text);
  await Deno.rename(`${path}.tmp`, path);
}

/** The inventory command's chunk in the bundle of `dir` (a lazily loaded file, hashed name). */
async function inventoryChunk(dir: string): Promise<string> {
  for await (const e of Deno.readDir(dir)) if (/^inventory-\w+\.js$/.test(e.name)) return e.name;
  throw new Error(`no inventory chunk in ${dir}`);
}

/** The bundle `link` points at: its real directory and the hash it was built from. */
async function current(root: string): Promise<{ dir: string; hash: string }> {
  const dir = await Deno.realPath(join(root, BUNDLE_DIR));
  return { dir, hash: (await Deno.readTextFile(join(dir, STAMP_FILE))).trim() };
}

Deno.test({
  name: "bundle: concurrent bundles switch atomically while the bundled CLI runs from them",
  ignore: Deno.build.os === "windows",
  async fn() {
    const started = Date.now();
    await using tmp = await tempDir("oneconnect-bundle-race-");
    const root = await scratchRepo(join(tmp.path, "repo"));
    const state = join(tmp.path, "state");
    await Deno.mkdir(state);
    // The layout older code left: dist/bundle a directory. The first switch moves it aside.
    await Deno.mkdir(join(root, BUNDLE_DIR), { recursive: true });
    await Deno.writeTextFile(join(root, BUNDLE_DIR, "main.js"), "");
    const command = join(root, "src/commands/inventory.ts");
    const original = await Deno.readTextFile(command);
    // Two sources whose inventory chunks differ in content, hence in (hashed) name.
    const variant = (n: number) =>
      `${original}\n(globalThis as Record<string, unknown>).oneconnectBundleRace = ${n};\n`;

    await task(root, "bundle");
    const a = await current(root);
    assert.equal((await Deno.lstat(join(root, BUNDLE_DIR))).isSymlink, true);
    assert.equal(a.dir, join(await Deno.realPath(join(root, BUNDLE_STORE)), a.hash));
    const chunkA = await inventoryChunk(a.dir);
    const ino = async (dir: string) => (await Deno.stat(join(dir, "main.js"))).ino;
    const builds = new Map([[a.dir, await ino(a.dir)]]);

    // Readers start from the real path, as `deno task agent` and the tests do, over and over
    // while the sources flip and two bundlers at a time switch the link.
    let stop = false;
    const runs: string[] = [];
    const reader = (async () => {
      while (!stop) {
        const entry = await Deno.realPath(join(root, BUNDLE_DIR, "main.js"));
        const version = await runAgent(["--version"], { entry });
        assert.equal(version.code, 0, version.stderr);
        assert.match(version.stdout, /^oneconnect-agent \d/);
        const inventory = await runAgent(["--state-dir", state, "inventory"], { entry });
        assert.equal(inventory.code, 0, inventory.stderr);
        assert.equal(typeof JSON.parse(inventory.stdout).host, "object");
        runs.push(entry);
      }
    })();
    // `deno task agent` resolves the real path itself, and re-bundles as it goes.
    const agent = (async () => {
      let n = 0;
      while (!stop) {
        assert.match(await task(root, "agent", "--version"), /^oneconnect-agent \d/);
        n++;
      }
      return n;
    })();
    const seen = new Set<string>();
    try {
      // Six flips and eight reader runs at least, fewer on a slow machine: the test stays well
      // under a minute.
      const more = (round: number) =>
        round <= 2 || ((round <= 6 || runs.length < 8) && Date.now() - started < 30_000);
      for (let round = 1; more(round); round++) {
        await writeAtomic(command, round % 2 === 1 ? variant(1) : original);
        await Promise.all([task(root, "bundle"), task(root, "bundle")]);
        seen.add((await current(root)).hash);
        if (round === 1) {
          // A process of bundle A that loads its lazy chunk only now finds A's, not B's.
          const b = await current(root);
          assert.notEqual(b.hash, a.hash);
          assert.notEqual(await inventoryChunk(b.dir), chunkA);
          builds.set(b.dir, await ino(b.dir));
          const old = await runAgent(["--state-dir", state, "inventory"], {
            entry: join(a.dir, "main.js"),
          });
          assert.equal(old.code, 0, old.stderr);
        }
      }
    } finally {
      stop = true;
      await Promise.allSettled([reader, agent]);
    }
    await reader;
    const agentRuns = await agent;
    // The sources flipped between two bundles, each built once and then switched back to.
    assert.equal(seen.size, 2, `${[...seen]}`);
    assert.ok(seen.has(a.hash));
    for (const [dir, built] of builds) assert.equal(await ino(dir), built, `${dir} was rebuilt`);
    assert.ok(runs.length >= 3, `only ${runs.length} reader runs`);
    assert.ok(agentRuns >= 1);
    // Both bundles stay (superseded minutes ago at most), and the legacy directory aged in the store.
    const kept = [];
    for await (const e of Deno.readDir(join(root, BUNDLE_STORE))) kept.push(e.name);
    assert.ok(kept.includes(a.hash) && kept.some((n) => n.startsWith(".legacy-")), `${kept}`);
    assert.ok(!kept.some((n) => n.startsWith(".partial-")), `${kept}`);
  },
});

Deno.test("bundle: a second call with unchanged sources does not rebuild, a change of an input does", async () => {
  await using tmp = await tempDir("oneconnect-bundle-stamp-");
  const root = await scratchRepo(tmp.path);
  await task(root, "bundle");
  const first = await current(root);
  const built = await Deno.stat(join(first.dir, "main.js"));
  assert.equal(first.hash, await sourceHash(root));

  // A touch is no change: content, not mtimes, names a bundle.
  const file = join(root, "src/version.ts");
  const text = await Deno.readTextFile(file);
  await Deno.utime(file, new Date(), new Date());
  await task(root, "bundle");
  assert.deepEqual(await current(root), first);
  const again = await Deno.stat(join(first.dir, "main.js"));
  assert.deepEqual([again.ino, again.mtime], [built.ino, built.mtime]);

  // A source file, then deno.json: each a new bundle.
  await Deno.writeTextFile(file, `${text}\n// changed\n`);
  await task(root, "bundle");
  const second = await current(root);
  assert.notEqual(second.hash, first.hash);
  assert.equal(second.hash, await sourceHash(root));
  await Deno.writeTextFile(
    join(root, "deno.json"),
    `${await Deno.readTextFile(join(root, "deno.json"))}\n`,
  );
  await task(root, "bundle");
  const third = await current(root);
  assert.ok(![first.hash, second.hash].includes(third.hash));
  // deno.lock and a new file under src/ change the hash as well (the bundler may normalise the
  // lock's formatting, so the hash itself is what is checked).
  await Deno.writeTextFile(
    join(root, "deno.lock"),
    `${await Deno.readTextFile(join(root, "deno.lock"))} `,
  );
  const lockChanged = await sourceHash(root);
  assert.notEqual(lockChanged, third.hash);
  await Deno.writeTextFile(join(root, "src/unused.ts"), "export const unused = 1;\n");
  assert.notEqual(await sourceHash(root), lockChanged);
});

Deno.test("bundle: superseded bundles are pruned after the grace period, never the current one", async () => {
  await using tmp = await tempDir("oneconnect-bundle-prune-");
  const now = Date.now();
  const ages: Record<string, number> = {
    current: 3_600_000,
    recent: 60_000,
    old: 11 * 60_000,
    ".partial-dead-1": 30 * 60_000,
  };
  for (const [name, age] of Object.entries(ages)) {
    await Deno.mkdir(join(tmp.path, name, "sub"), { recursive: true });
    await Deno.utime(join(tmp.path, name), new Date(now - age), new Date(now - age));
  }
  await Deno.writeTextFile(join(tmp.path, ".lock"), "");
  await Deno.utime(join(tmp.path, ".lock"), new Date(0), new Date(0));
  assert.deepEqual(await pruneBundles(tmp.path, "current", now), [".partial-dead-1", "old"]);
  const left = [];
  for await (const e of Deno.readDir(tmp.path)) left.push(e.name);
  assert.deepEqual(left.sort(), [".lock", "current", "recent"]);
});

Deno.test({
  name:
    "bundle: Deno resolves a lazy import against the symlinked path it started, hence the real path",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using tmp = await tempDir("oneconnect-bundle-symlink-");
    for (const name of ["a", "b"]) {
      await Deno.mkdir(join(tmp.path, "bundles", name), { recursive: true });
      await Deno.writeTextFile(
        join(tmp.path, "bundles", name, "main.js"),
        `console.log("ready");
await Deno.stdin.read(new Uint8Array(1));
console.log((await import("./chunk.js")).name);`,
      );
      await Deno.writeTextFile(
        join(tmp.path, "bundles", name, "chunk.js"),
        `export const name = "${name}";`,
      );
    }
    const link = join(tmp.path, "bundle");
    await Deno.symlink("bundles/a", link);
    /** Starts a's main.js, switches the link to b once it runs, then lets it import its chunk. */
    const chunkAfterSwitch = async (by: "link" | "real path") => {
      await Deno.remove(link);
      await Deno.symlink("bundles/a", link);
      const entry = by === "link"
        ? join(link, "main.js")
        : await Deno.realPath(join(link, "main.js"));
      const child = withDeadline(
        new Deno.Command(Deno.execPath(), {
          // As the agent runs (tasks/permissions.flags): a dynamic import loads when it runs.
          args: ["run", "--quiet", "--allow-read", "--unstable-lazy-dynamic-imports", entry],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
        RUN_DEADLINE_MS,
        entry,
      );
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assert.equal((await lines.read()).value, "ready\n");
      await Deno.symlink("bundles/b", `${link}.next`);
      await Deno.rename(`${link}.next`, link);
      await feedStdin(child, "\n");
      const { value } = await lines.read();
      lines.releaseLock();
      assert.equal((await child.status).code, 0);
      return value?.trim();
    };
    // Started by the link: the chunk of the bundle switched to (which, with hashed chunk names,
    // would not exist). Started by the real path: its own.
    assert.equal(await chunkAfterSwitch("link"), "b");
    assert.equal(await chunkAfterSwitch("real path"), "a");
  },
});

Deno.test("bundle: where no symlink can be made, dist/bundle is a directory replaced as before", async () => {
  await using tmp = await tempDir("oneconnect-bundle-nolink-");
  const root = await scratchRepo(tmp.path);
  // Deno.symlink needs unscoped --allow-write: scoped, it fails as on Windows without the
  // privilege, and the fallback runs.
  const bundleWithoutSymlinks = async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        `--allow-write=${join(root, "dist")}`,
        "--allow-run",
        "tasks/bundle.ts",
      ],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = await withDeadline(child, RUN_DEADLINE_MS, "tasks/bundle.ts").output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const link = await Deno.lstat(join(root, BUNDLE_DIR));
    assert.ok(link.isDirectory && !link.isSymlink);
    return await current(root);
  };
  const first = await bundleWithoutSymlinks();
  assert.equal(first.dir, await Deno.realPath(join(root, BUNDLE_DIR)));
  assert.equal(first.hash, await sourceHash(root));
  const built = await Deno.stat(join(first.dir, "main.js"));
  assert.deepEqual(await bundleWithoutSymlinks(), first);
  assert.equal((await Deno.stat(join(first.dir, "main.js"))).ino, built.ino);
  await Deno.writeTextFile(join(root, "src/unused.ts"), "export const unused = 1;\n");
  assert.equal((await bundleWithoutSymlinks()).hash, await sourceHash(root));
  const inventory = await runAgent(["--state-dir", tmp.path, "inventory"], {
    entry: join(root, BUNDLE_ENTRY),
  });
  assert.equal(inventory.code, 0, inventory.stderr);
});
