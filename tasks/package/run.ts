/**
 * Runs the distributions' tools for `deno task package` and turns a failure into one line that
 * names the command, followed by its own output.
 *
 * @module
 */
import { BuildError, processRunner } from "../build_all.ts";

/** Runs `cmd` (in `cwd`, default the current directory); returns stdout, throws on non-zero. */
export async function run(cmd: string[], cwd = "."): Promise<string> {
  const result = await processRunner(cmd[0]!, cmd.slice(1), cwd);
  if (result.code !== 0) {
    throw new BuildError(
      `${cmd[0]} exited with code ${result.code}: ${
        `${result.stderr}${result.stdout}`.trim().split("\n").slice(-8).join(" | ")
      }`,
    );
  }
  return result.stdout;
}
