/**
 * The agent's permission flags, read from `tasks/permissions.flags`: the single list shared by
 * `deno task agent`, the end-to-end tests and `deno task build-all`.
 */
export const PERMISSIONS_FILE = new URL("./permissions.flags", import.meta.url);

/** Parses a permissions file: one flag per line, blank lines and `#` comments ignored. */
export function parsePermissionFlags(text: string): string[] {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) =>
    line !== "" && !line.startsWith("#")
  );
}

/** Reads the shared permission flags. */
export async function agentPermissionFlags(): Promise<string[]> {
  return parsePermissionFlags(await Deno.readTextFile(PERMISSIONS_FILE));
}

/**
 * The shared flags for `deno run` of the agent: the list, plus run access to this Deno itself,
 * which the agent starts again as its PAC evaluator (src/proxy/pac.ts). A compiled binary is its
 * own evaluator, allowed by its install path in the list (docs/networks.md "Proxies: PAC and OS settings").
 */
export async function agentRunFlags(): Promise<string[]> {
  return [...await agentPermissionFlags(), `--allow-run=${Deno.execPath()}`];
}

/**
 * Flags of the shared list that only `deno run` takes, never `deno compile`.
 * `--unstable-lazy-dynamic-imports`: `deno run` otherwise reads and parses, at start-up, every
 * module a literal `import("…")` names (every CLI command's chunk, x509 included), which a steady
 * `run` holds as ~1.2 MiB more RSS; `deno compile` must still follow those imports to embed them,
 * and a compiled binary analyses no module graph at start-up.
 */
export const RUN_ONLY_FLAGS: readonly string[] = ["--unstable-lazy-dynamic-imports"];
