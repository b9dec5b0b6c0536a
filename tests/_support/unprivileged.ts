/**
 * Runs the CLI as an unprivileged user (nobody, via util-linux `setpriv`), for the mistakes only a
 * non-root user makes (a root-owned state directory, a forgotten sudo). Needs root to switch user
 * and the bundled entry (nobody cannot read root's Deno cache for the source's npm imports).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { agentPermissionFlags } from "../../tasks/permissions.ts";
import { childEnv, type CliResult, MAIN, RUN_DEADLINE_MS, withDeadline } from "./helpers.ts";

/** uid and gid of `nobody` on Debian. */
export const NOBODY = 65534;

/** Why unprivileged runs cannot happen here, or undefined when they can. */
export const UNPRIVILEGED_SKIP: string | undefined = Deno.build.os !== "linux"
  ? "setpriv is Linux-only"
  : Deno.uid() !== 0
  ? "switching to nobody needs root"
  : !MAIN.endsWith(".js")
  ? "nobody cannot read the Deno cache the source entry needs: set ONECONNECT_TEST_ENTRY (deno task test does)"
  : undefined;

/**
 * A directory nobody can traverse holding a hard link to (or copy of) the deno binary, which
 * usually lives under root's 0700 home; removed when disposed.
 */
export async function nobodyDeno(): Promise<AsyncDisposable & { deno: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-nobody-" });
  await Deno.chmod(dir, 0o755);
  const deno = join(dir, "deno");
  const real = await Deno.realPath(Deno.execPath());
  await Deno.link(real, deno).catch(() => Deno.copyFile(real, deno));
  return {
    deno,
    dir,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs the CLI as nobody with the shared permission flags; `env` as for `runAgent`. */
export async function runAgentAsNobody(
  deno: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const permissions = await agentPermissionFlags();
  const child = new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "--",
      deno,
      "run",
      "--quiet",
      ...permissions,
      MAIN,
      ...args,
    ],
    // Root's DENO_DIR is not nobody's to write.
    env: childEnv({ NO_COLOR: "1", DENO_DIR: join(dirname(deno), "cache"), ...env }),
    clearEnv: true,
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await withDeadline(child, RUN_DEADLINE_MS, `nobody: oneconnect-agent ${args}`)
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
