/**
 * `deno task bundle`: pre-bundles the CLI into `dist/bundle/` (git-ignored, never committed), the
 * entry point that ships. `deno bundle` tree-shakes `zod/mini` out of the locked npm package and
 * leaves no npm or Node layer to start: a steady `run` from the bundle holds several MB less RSS
 * than from source (see `deno task bench`). Code splitting keeps each command's module, and the
 * x509 libraries of enroll/renew, in chunks that a steady `run` never loads.
 *
 * Usage: deno task bundle [--outdir DIR]
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The entry point that is bundled, relative to the repository root. */
export const SOURCE_ENTRY = "src/main.ts";
/** The PAC evaluator (`src/proxy/pac.ts` runs it by URL): a bundle entry point of its own. */
export const WORKER_ENTRY = "src/proxy/pac_evaluator.ts";
/** Where `deno task bundle` writes, relative to the repository root. */
export const BUNDLE_DIR = "dist/bundle";
/** The bundled entry point, relative to the repository root. */
export const BUNDLE_ENTRY = `${BUNDLE_DIR}/main.js`;
/** Absolute path of the repository root. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

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

/**
 * Bundles into `outdir` (absolute, or relative to the root) through a sibling temp directory, so that a reader
 * never sees a half-written bundle or stale chunks of an older one. Returns the absolute entry.
 */
export async function bundle(outdir: string = BUNDLE_DIR): Promise<string> {
  // Platform paths (not URL.pathname, which is `/C:/...` on Windows), so Windows can bundle too.
  const target = isAbsolute(outdir) ? outdir : join(ROOT, outdir);
  const partial = `${target}.partial-${Deno.pid}`;
  await Deno.mkdir(dirname(target), { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    args: bundleArgs(partial),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    const dec = new TextDecoder();
    throw new Error(
      `Cannot bundle "${SOURCE_ENTRY}": deno bundle exited ${out.code}: ${
        dec.decode(out.stderr).trim()
      }`,
    );
  }
  await Deno.remove(target, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.rename(partial, target);
  return `${target}/main.js`;
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--outdir");
  // Silent on success: `deno task agent` runs this before every command.
  await bundle(i >= 0 ? Deno.args[i + 1] : BUNDLE_DIR);
}
