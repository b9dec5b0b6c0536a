import { AgentError, ExitCode } from "./errors.ts";
import { redact, writeStderrLine } from "./log.ts";

/**
 * Reports `error` as one redacted `error:` line on stderr and returns the exit code it maps to;
 * with `debug` (the effective log level is debug), an internal error's stack follows.
 */
export function reportError(error: unknown, debug = false): number {
  if (error instanceof AgentError) {
    writeStderrLine(`error: ${redact(error.message).replace(/\r?\n/g, " ")}`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  writeStderrLine(
    `error: internal error: ${
      redact(message).replace(/\r?\n/g, " ")
    } (rerun with --log-level debug for a trace)`,
  );
  if (error instanceof Error && error.stack && debug) {
    writeStderrLine(redact(error.stack));
  }
  return ExitCode.internal;
}

/**
 * Routes an uncaught exception or an unhandled rejection through {@linkcode reportError} instead
 * of Deno's default report (which prints the message and stack unredacted), then calls `exit`.
 */
export function reportUncaughtErrors(
  exit: (code: number) => void,
  debug: () => boolean = () => false,
): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    exit(reportError(event.error ?? event.message, debug()));
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    exit(reportError(event.reason, debug()));
  });
}
