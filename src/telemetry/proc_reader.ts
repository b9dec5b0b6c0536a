/**
 * The Linux /proc and /sys reader. Deno 2.9 refuses these trees to `--allow-read` (even
 * `--allow-read=/proc/stat`) without `--allow-all`, so they are read by `head`, several files per
 * process.
 */
import type { SystemSeam } from "./system.ts";

/** GNU coreutils `head`: Deno refuses /proc and /sys to `--allow-read` without `--allow-all`. */
export const HEAD = "/usr/bin/head";

/**
 * How long `head` may take over /proc and /sys files, which the kernel answers in milliseconds:
 * 2 s rather than the 10 s a child gets by default, so that a stuck read ends within the beat.
 */
const PROC_READ_TIMEOUT_MS = 2_000;

/** Splits `head -v` output into file path and content; unreadable files have no section. */
export function parseHeadSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = text.split(/^==> (.+) <==$/m);
  for (let i = 1; i + 1 < parts.length; i += 2) {
    out.set(parts[i]!, parts[i + 1]!.replace(/^\n/, "").replace(/\n+$/, ""));
  }
  return out;
}

/**
 * Runs `head` with `args` (e.g. `-n 4096 /proc/stat /proc/net/dev`) and returns each file's
 * section by path. `head` exits 1 when a file is unreadable; the others still count.
 */
export async function readHeads(
  system: Pick<SystemSeam, "runCommand">,
  args: readonly string[],
): Promise<Map<string, string>> {
  return parseHeadSections(
    await system.runCommand(HEAD, [...args], { anyExit: true, timeoutMs: PROC_READ_TIMEOUT_MS }),
  );
}
