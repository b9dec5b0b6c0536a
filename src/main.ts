import { runCli } from "./cli.ts";
import { ExitCode, ShutdownRequest } from "./errors.ts";
import { reportError, reportUncaughtErrors } from "./error_report.ts";
import { neutraliseTrustEnvironment } from "./trust/trust_store.ts";

const shutdown = new AbortController();
const signals: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];
for (const signal of signals) {
  Deno.addSignalListener(signal, () => shutdown.abort(new ShutdownRequest(signal)));
}

// The effective log level (flag > environment > agent.json), once the CLI has resolved it.
let debug = false;
reportUncaughtErrors((code) => Deno.exit(code), () => debug);

let code: number = ExitCode.ok;
try {
  neutraliseTrustEnvironment();
  await runCli(Deno.args, {
    env: (name) => Deno.env.get(name),
    shutdown: shutdown.signal,
    onLogLevel: (level) => debug = level === "debug",
  });
} catch (error) {
  code = reportError(error, debug);
}
Deno.exit(code);
