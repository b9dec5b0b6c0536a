import type { ResolvedConfig } from "../../src/config/config.ts";
import type { CommandContext } from "../../src/config/context.ts";
import { type Logger, silentLogger } from "../../src/log.ts";

/** What a test may change in {@linkcode testContext}. */
export interface TestContextOptions {
  config?: Partial<ResolvedConfig>;
  logger?: Logger;
  env?: Record<string, string>;
  /** Standard input's content, or a reader that fails the test when the command reads stdin. */
  stdin?: string | (() => ReadableStream<Uint8Array>);
  terminal?: boolean;
  shutdown?: AbortSignal;
}

/** A command context for calling a command in-process: defaults as resolved, stdout captured. */
export function testContext(
  stateDir: string,
  opts: TestContextOptions = {},
): { ctx: CommandContext; out: string[] } {
  const out: string[] = [];
  const stdin = opts.stdin;
  const ctx: CommandContext = {
    config: {
      stateDir,
      logLevel: "info",
      logFormat: "text",
      auth: "bearer",
      timeoutSeconds: 15,
      sources: {},
      ...opts.config,
    },
    logger: opts.logger ?? silentLogger,
    stdout: (text) => out.push(text),
    env: (name) => opts.env?.[name],
    stdin: typeof stdin === "function"
      ? stdin
      : () => new Blob([stdin ?? ""]).stream() as ReadableStream<Uint8Array<ArrayBuffer>>,
    stdinIsTerminal: () => opts.terminal ?? false,
    shutdown: opts.shutdown ?? new AbortController().signal,
  };
  return { ctx, out };
}
