import { runCli } from "./cli.ts";
import { ExitCode, ShutdownRequest } from "./errors.ts";
import { type ErrorOutput, reportError, reportUncaughtErrors } from "./error_report.ts";
import { stderrIsJournal } from "./log.ts";
import { neutraliseTrustEnvironment } from "./trust/trust_store.ts";
import { PAC_EVALUATOR_ARG } from "./proxy/pac_entry.ts";

// A compiled agent is its own Deno: src/proxy/pac.ts starts it again as the PAC evaluator.
if (Deno.build.standalone && Deno.args[0] === PAC_EVALUATOR_ARG) {
  await (await import("./proxy/pac_worker.ts")).serveEvaluator();
  Deno.exit(0);
}

const shutdown = new AbortController();
const signals: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];
for (const signal of signals) {
  Deno.addSignalListener(signal, () => shutdown.abort(new ShutdownRequest(signal)));
}

// The effective log level and format (flag > environment > agent.json), once the CLI knows them.
let debug = false;
const output: ErrorOutput = {};
reportUncaughtErrors((code) => Deno.exit(code), () => debug, () => output);

let code: number = ExitCode.ok;
try {
  neutraliseTrustEnvironment();
  await runCli(Deno.args, {
    env: (name) => Deno.env.get(name),
    shutdown: shutdown.signal,
    onLogLevel: (level) => debug = level === "debug",
    onLogFormat: (format) => {
      output.format = format;
      output.journal = stderrIsJournal((name) => Deno.env.get(name));
    },
  });
} catch (error) {
  code = reportError(error, debug, output);
}
Deno.exit(code);
