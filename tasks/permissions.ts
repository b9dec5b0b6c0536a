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
