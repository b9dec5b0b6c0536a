import { AgentError, ExitCode, failureFields } from "./errors.ts";
import { createLogger, type LogFormat, redact, writeStderrLine } from "./log.ts";

/** How the final error line is written: the format and journald prefix the logs use. */
export interface ErrorOutput {
  format?: LogFormat;
  /** stderr is journald's (see `stderrIsJournal`): prefix `<3>`. */
  journal?: boolean;
  /** Receives the finished line (default: stderr). */
  write?: (line: string) => void;
}

/**
 * Reports `error` as one redacted `error:` line on stderr (with `--log-format json`, one JSON
 * object with `level: "error"`, the exit code and the failure's kind, HTTP status, problem code
 * and retry delay as fields) and returns the exit code it maps to; with `debug` (the effective
 * log level is debug), an internal error's stack follows.
 */
export function reportError(error: unknown, debug = false, output: ErrorOutput = {}): number {
  const known = error instanceof AgentError;
  const exitCode = known ? error.exitCode : ExitCode.internal;
  const raw = error instanceof Error ? error.message : String(error);
  const message = known ? raw : `internal error: ${raw} (rerun with --log-level debug for a trace)`;
  const stack = !known && debug && error instanceof Error ? error.stack : undefined;
  const write = output.write ?? writeStderrLine;
  if (output.format === "json") {
    createLogger({ format: "json", journal: output.journal, write }).error(message, {
      exit_code: exitCode,
      ...failureFields(error),
      ...(stack ? { stack } : {}),
    });
    return exitCode;
  }
  const prefix = output.journal ? "<3>" : "";
  write(`${prefix}error: ${redact(message).replace(/\r?\n/g, " ")}`);
  if (stack) write(redact(stack));
  return exitCode;
}

/**
 * Routes an uncaught exception or an unhandled rejection through {@linkcode reportError} instead
 * of Deno's default report (which prints the message and stack unredacted), then calls `exit`.
 */
export function reportUncaughtErrors(
  exit: (code: number) => void,
  debug: () => boolean = () => false,
  output: () => ErrorOutput = () => ({}),
): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    exit(reportError(event.error ?? event.message, debug(), output()));
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    exit(reportError(event.reason, debug(), output()));
  });
}
