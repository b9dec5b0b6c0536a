import type { ResolvedConfig } from "./config.ts";
import type { Logger } from "../log.ts";
import { writeAllSync } from "../file_system.ts";

/** What every command receives: resolved configuration, logger and the process's I/O seams. */
export interface CommandContext {
  config: ResolvedConfig;
  logger: Logger;
  /** Writes command output (results, never logs) to stdout. */
  stdout: (text: string) => void;
  /** Reads one environment variable. */
  env: (name: string) => string | undefined;
  /** Standard input, for `--token-file -`. */
  stdin: () => ReadableStream<Uint8Array>;
  /** Whether stdin is an interactive terminal (for confirmation prompts). */
  stdinIsTerminal: () => boolean;
  /** Aborted when the process is asked to stop (SIGINT, SIGTERM, SIGBREAK). */
  shutdown: AbortSignal;
}

/** Writes `text` to stdout synchronously and completely. */
export function writeStdout(text: string): void {
  writeAllSync(Deno.stdout, text);
}
