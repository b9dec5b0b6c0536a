/**
 * `deno task bundle`: pre-bundles the CLI into `dist/bundle/` (git-ignored, never committed), the
 * entry point that ships. `deno bundle` tree-shakes `zod/mini` out of the locked npm package and
 * leaves no npm or Node layer to start: a steady `run` from the bundle holds several MB less RSS
 * than from source (see `deno task bench`). Code splitting keeps each command's module, and the
 * x509 libraries of enroll/renew, in chunks that a steady `run` never loads.
 *
 * Calls may overlap (two terminals, a test and a script), so bundles are content-addressed:
 * `dist/bundles/<hash>/`, `<hash>` naming what it was built from ({@linkcode sourceHash}), and
 * `dist/bundle` is a symlink to the current one, switched by renaming a new link over it (atomic:
 * a reader sees the old bundle or the new one, never none). Deno 2.9.6 resolves a lazy import
 * (`--unstable-lazy-dynamic-imports`, as the agent runs) against the path the process started by,
 * symlink or not (tests/bundle_race_test.ts), so whoever must keep its own chunks while another
 * call re-bundles starts the real path (`deno task agent`, the tests' entry): a superseded bundle
 * stays for {@linkcode KEEP_SUPERSEDED_MS}. An unchanged source skips the build.
 * Where symlinks cannot be made (Windows without Developer Mode), `dist/bundle` is a directory
 * replaced by remove and rename, as before: briefly missing while another call switches.
 *
 * Usage: deno task bundle [--outdir DIR]
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The entry point that is bundled, relative to the repository root. */
export const SOURCE_ENTRY = "src/main.ts";
/** The PAC evaluator (`src/proxy/pac.ts` runs it by URL): a bundle entry point of its own. */
export const WORKER_ENTRY = "src/proxy/pac_evaluator.ts";
/** Where `deno task bundle` writes, relative to the repository root. */
export const BUNDLE_DIR = "dist/bundle";
/** The bundled entry point, relative to the repository root. */
export const BUNDLE_ENTRY = `${BUNDLE_DIR}/main.js`;
/** The content-addressed bundles {@linkcode BUNDLE_DIR} links to: `<store>/<hash>/`. */
export const BUNDLE_STORE = storeOf(BUNDLE_DIR);
/** Absolute path of the repository root. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** What a bundle is built from, relative to the root: a change of any byte rebuilds. */
export const SOURCE_INPUTS = ["src", "deno.json", "deno.lock"];
/** The file in each bundle naming the {@linkcode sourceHash} it was built from. */
export const STAMP_FILE = ".source-hash";
/** How long a superseded bundle is kept for the processes started from it. */
export const KEEP_SUPERSEDED_MS = 10 * 60_000;

/** The `deno bundle` arguments that write the bundle of {@linkcode SOURCE_ENTRY} to `outdir`. */
export function bundleArgs(outdir: string): string[] {
  return [
    "bundle",
    "--quiet",
    "--platform",
    "deno",
    "--code-splitting",
    "--outdir",
    outdir,
    SOURCE_ENTRY,
    WORKER_ENTRY,
  ];
}

/** The store of the bundles a bundle directory (link) points to: beside it, its name plus "s". */
export function storeOf(bundleDir: string): string {
  return `${bundleDir}s`;
}

/**
 * Hash of everything a bundle is built from: the bytes and paths of {@linkcode SOURCE_INPUTS}, the
 * Deno version and the bundle arguments. Content rather than mtimes and sizes: the directory name
 * then means the same sources (switching back to a branch reuses its bundle), a touch or a checkout
 * that rewrites equal files does not rebuild, and an edit that keeps size and mtime still does.
 * Reading the ~1 MB of inputs costs a few ms per call.
 */
export async function sourceHash(root: string = ROOT): Promise<string> {
  const hash = createHash("sha256");
  hash.update(`deno ${Deno.version.deno}\n${bundleArgs("").join(" ")}\n`);
  const files: string[] = [];
  for (const input of SOURCE_INPUTS) await listInputs(root, input, files);
  for (const file of files) {
    const bytes = await Deno.readFile(join(root, file)).catch(ifMissing(null));
    hash.update(`${file} ${bytes === null ? "missing" : bytes.length}\n`);
    if (bytes !== null) hash.update(bytes);
  }
  return hash.digest("hex").slice(0, 20);
}

/** Adds the files under `path` (relative to `root`, sorted, `/`-separated) to `out`. */
async function listInputs(root: string, path: string, out: string[]): Promise<void> {
  const info = await Deno.stat(join(root, path)).catch(ifMissing(null));
  if (info === null || !info.isDirectory) {
    out.push(path);
    return;
  }
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(root, path))) names.push(entry.name);
  for (const name of names.sort()) await listInputs(root, `${path}/${name}`, out);
}

/** A rejection handler that turns NotFound into `value` and rethrows anything else. */
function ifMissing<T>(value: T): (e: unknown) => T {
  return (e) => {
    if (e instanceof Deno.errors.NotFound) return value;
    throw e;
  };
}

/** The hash the bundle in `dir` was built from, or null (none, or a bundle of older code). */
async function stampOf(dir: string): Promise<string | null> {
  const text = await Deno.readTextFile(join(dir, STAMP_FILE)).catch(ifMissing(null));
  return text?.trim() ?? null;
}

/**
 * Bundles into `outdir` (absolute, or relative to the root) unless it already holds a bundle of
 * today's sources: into `<outdir>s/<hash>/`, then switches `outdir` to it (see the module doc).
 * Returns the bundle's real absolute entry, which keeps its chunks while others re-bundle.
 */
export async function bundle(outdir: string = BUNDLE_DIR): Promise<string> {
  // Platform paths (not URL.pathname, which is `/C:/...` on Windows), so Windows can bundle too.
  const link = isAbsolute(outdir) ? outdir : join(ROOT, outdir);
  const store = storeOf(link);
  const entry = () => Deno.realPath(join(link, "main.js"));
  if (await stampOf(link) === await sourceHash()) return await entry();
  await Deno.mkdir(store, { recursive: true });
  // One builder and switcher at a time (an OS lock, released if the process dies); readers never
  // wait. A second call with the same sources waits here, then finds the bundle current.
  using lock = await Deno.open(join(store, ".lock"), { create: true, write: true });
  await lock.lock(true);
  for (let attempt = 1;; attempt++) {
    const hash = await sourceHash();
    if (await stampOf(link) === hash) return await entry();
    const dir = join(store, hash);
    if (await stampOf(dir) !== hash && !await build(store, hash)) {
      if (attempt < 3) continue;
      throw new Error(`Cannot bundle "${SOURCE_ENTRY}": the sources kept changing while bundling`);
    }
    await switchTo(link, store, hash);
    await pruneBundles(store, hash);
    return await entry();
  }
}

/**
 * Builds the bundle of `hash` into `<store>/<hash>/` through a partial directory; false when the
 * sources changed while bundling (the result would not be what `hash` names).
 */
async function build(store: string, hash: string): Promise<boolean> {
  const partial = join(store, `.partial-${hash}-${Deno.pid}`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: bundleArgs(partial),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0 || await sourceHash() !== hash) {
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    if (out.code === 0) return false;
    const dec = new TextDecoder();
    throw new Error(
      `Cannot bundle "${SOURCE_ENTRY}": deno bundle exited ${out.code}: ${
        dec.decode(out.stderr).trim()
      }`,
    );
  }
  await Deno.writeTextFile(join(partial, STAMP_FILE), `${hash}\n`);
  const dir = join(store, hash);
  // Left by a build that died before its stamp: not a bundle of `hash`.
  await Deno.remove(dir, { recursive: true }).catch(ifMissing(undefined));
  await Deno.rename(partial, dir);
  return true;
}

/** Points `link` at `<store>/<hash>/` and marks the bundle it pointed at as superseded now. */
async function switchTo(link: string, store: string, hash: string): Promise<void> {
  const previous = await Deno.readLink(link).catch(() => null);
  const next = `${link}.next-${Deno.pid}`;
  await Deno.remove(next).catch(ifMissing(undefined));
  try {
    // Relative, so that the repository can move.
    await Deno.symlink(`${basename(store)}/${hash}`, next, { type: "dir" });
  } catch {
    // No symlinks here (Windows without Developer Mode): the directory itself, as before.
    await Deno.remove(link, { recursive: true }).catch(ifMissing(undefined));
    await Deno.rename(join(store, hash), link);
    return;
  }
  for (let attempt = 1;; attempt++) {
    try {
      await Deno.rename(next, link);
      break;
    } catch (e) {
      const info = await Deno.lstat(link).catch(() => null);
      if (attempt === 3 || info === null) throw e;
      // Windows cannot rename over a directory symlink: a moment without one.
      if (info.isSymlink) await Deno.remove(link);
      else {
        // The first switch from a directory (bundled by older code): it ages out in the store.
        const legacy = join(store, `.legacy-${Deno.pid}-${Date.now()}`);
        await Deno.rename(link, legacy);
        await touch(legacy);
      }
    }
  }
  if (previous !== null && basename(previous) !== hash) {
    await touch(join(store, basename(previous))).catch(ifMissing(undefined));
  }
}

/** Sets the mtime of `path` to now: when a bundle stopped being current. */
async function touch(path: string): Promise<void> {
  const now = new Date();
  await Deno.utime(path, now, now);
}

/**
 * Removes the entries of `store` superseded (or left by a dead build) more than `keepMs` ago,
 * never `current`; returns their names.
 */
export async function pruneBundles(
  store: string,
  current: string,
  now: number = Date.now(),
  keepMs: number = KEEP_SUPERSEDED_MS,
): Promise<string[]> {
  const removed: string[] = [];
  for await (const entry of Deno.readDir(store)) {
    if (entry.name === current || entry.name === ".lock") continue;
    const path = join(store, entry.name);
    const mtime = (await Deno.lstat(path).catch(() => null))?.mtime;
    if (mtime === undefined || mtime === null || now - mtime.getTime() < keepMs) continue;
    await Deno.remove(path, { recursive: true }).catch(ifMissing(undefined));
    removed.push(entry.name);
  }
  return removed.sort();
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--outdir");
  // Silent on success: `deno task agent` runs this before every command.
  await bundle(i >= 0 ? Deno.args[i + 1] : BUNDLE_DIR);
}
