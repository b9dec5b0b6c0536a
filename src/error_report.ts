import { AgentError, ExitCode } from "./errors.ts";
import { redact, writeStderrLine } from "./log.ts";

/** Whether the command line or environment asked for debug output (stack traces). */
function debugRequested(args: readonly string[]): boolean {
  const i = args.indexOf("--log-level");
  if (i >= 0 && args[i + 1] === "debug") return true;
  if (args.includes("--log-level=debug")) return true;
  try {
    return Deno.env.get("ONECONNECT_LOG_LEVEL") === "debug";
  } catch {
    return false;
  }
}

/** Reports `error` as one redacted `error:` line on stderr and returns the exit code it maps to. */
export function reportError(error: unknown, args: readonly string[] = Deno.args): number {
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
  if (error instanceof Error && error.stack && debugRequested(args)) {
    writeStderrLine(redact(error.stack));
  }
  return ExitCode.internal;
}

/**
 * Routes an uncaught exception or an unhandled rejection through {@linkcode reportError} instead
 * of Deno's default report (which prints the message and stack unredacted), then calls `exit`.
 */
export function reportUncaughtErrors(exit: (code: number) => void): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    exit(reportError(event.error ?? event.message));
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    exit(reportError(event.reason));
  });
}
