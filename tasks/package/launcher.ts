/**
 * The test payload: `deno compile` cannot download its runtime on the machines that run the
 * tests, so they package this launcher as `/usr/bin/oneconnect-agent` (`package --binary`). It
 * runs the bundled agent with exactly the permission flags the compiled binaries get
 * (tasks/permissions.flags), so the packaged service is confined the same way. The release path
 * packages the compiled binaries instead.
 *
 * @module
 */
import { agentPermissionFlags } from "../permissions.ts";

/** Inputs of {@linkcode launcherScript}. */
export interface LauncherOptions {
  /** The deno executable, as seen where the launcher runs. */
  deno: string;
  /** The bundled entry point (dist/bundle/main.js), as seen where the launcher runs. */
  entry: string;
  /**
   * Exported as ONECONNECT_LAUNCHER_LABEL into the agent's environment (which the agent never
   * reads): tests read it back from /proc/<pid>/environ to tell which package's launcher runs.
   */
  label: string;
}

/** The launcher script's text. */
export async function launcherScript(o: LauncherOptions): Promise<string> {
  const flags = await agentPermissionFlags();
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  return [
    "#!/bin/sh",
    "# oneconnect-agent test launcher (tasks/package/launcher.ts): the bundled agent run by deno",
    "# with the release binaries' permission flags.",
    `ONECONNECT_LAUNCHER_LABEL=${quote(o.label)}`,
    "export ONECONNECT_LAUNCHER_LABEL",
    `exec ${quote(o.deno)} run --quiet --no-config ${flags.map(quote).join(" ")} ${
      quote(o.entry)
    } "$@"`,
    "",
  ].join("\n");
}
