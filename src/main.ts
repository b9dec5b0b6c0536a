import { runCli } from "./cli.ts";
import { AgentError, ExitCode } from "./errors.ts";
import { redact, writeStderrLine } from "./log.ts";
import { neutraliseTrustEnvironment } from "./trust_store.ts";

function debugRequested(): boolean {
  const i = Deno.args.indexOf("--log-level");
  if (i >= 0 && Deno.args[i + 1] === "debug") return true;
  if (Deno.args.includes("--log-level=debug")) return true;
  try {
    return Deno.env.get("ONECONNECT_LOG_LEVEL") === "debug";
  } catch {
    return false;
  }
}

/** Reports `error` as one redacted line on stderr and returns the exit code it maps to. */
function report(error: unknown): number {
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
  if (error instanceof Error && error.stack && debugRequested()) {
    writeStderrLine(redact(error.stack));
  }
  return ExitCode.internal;
}

const shutdown = new AbortController();
const signals: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];
for (const signal of signals) {
  Deno.addSignalListener(signal, () => shutdown.abort(new Error(`received ${signal}`)));
}

globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  Deno.exit(report(event.reason));
});

let code: number = ExitCode.ok;
try {
  neutraliseTrustEnvironment();
  await runCli(Deno.args, {
    env: (name) => Deno.env.get(name),
    shutdown: shutdown.signal,
  });
} catch (error) {
  code = report(error);
}
Deno.exit(code);
