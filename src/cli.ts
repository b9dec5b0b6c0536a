import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { type ConfigFlags, denoConfigHost, resolveConfig } from "./config.ts";
import type { CommandContext } from "./context.ts";
import { writeStdout } from "./context.ts";
import { UsageError } from "./errors.ts";
import { createLogger, writeStderrLine } from "./log.ts";
import { selectRootStore } from "./trust_store.ts";
import { VERSION } from "./version.ts";

/** Exit codes as shown in `--help` and the README. */
export const EXIT_CODES_HELP = `
Exit codes:
  0  ok
  1  internal error
  2  usage or configuration error (bad flag, bad URL, unreadable, corrupt or insecure local state,
     or TLS trust that cannot be limited to the pinned CAs)
  3  the platform rejected the credential (token invalid/expired/used, credential revoked,
     agent removed, identity cloned): an operator must act
  4  the platform could not be reached or kept failing
  5  not enrolled
  6  already enrolled (enroll without --force)
  7  another oneconnect-agent process holds the identity (e.g. renew while the service runs)`;

/** Seams the CLI needs from the process; `src/main.ts` passes the real ones. */
export interface CliProcess {
  env: (name: string) => string | undefined;
  shutdown: AbortSignal;
}

function integerIn(min: number, max: number, what: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected ${what} from ${min} to ${max}`);
    }
    return n;
  };
}

function example(...lines: string[]): string {
  return `\nExample:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;
}

/** Builds the command tree; each action loads its module lazily so `run` never pays for enroll. */
export function buildCli(proc: CliProcess): Command {
  const context = async (cmd: Command, extra: ConfigFlags = {}): Promise<CommandContext> => {
    const opts = cmd.optsWithGlobals() as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === "string" ? v : undefined);
    const config = await resolveConfig({
      stateDir: str(opts.stateDir),
      logLevel: str(opts.logLevel),
      logFormat: str(opts.logFormat),
      ...extra,
    }, { ...denoConfigHost, env: proc.env });
    return {
      config,
      logger: createLogger({ level: config.logLevel, format: config.logFormat }),
      stdout: writeStdout,
      env: proc.env,
      stdin: () => Deno.stdin.readable,
      stdinIsTerminal: () => Deno.stdin.isTerminal(),
      shutdown: proc.shutdown,
    };
  };

  const program = new Command("oneconnect-agent")
    .description("OneConnect endpoint agent: enrolls this host and reports telemetry heartbeats.")
    .version(`oneconnect-agent ${VERSION}`, "-V, --version", "print the version and exit")
    .helpOption("-h, --help", "show help")
    .option("--state-dir <dir>", "state directory (env ONECONNECT_STATE_DIR)")
    .option("--log-level <level>", "debug|info|warn|error (env ONECONNECT_LOG_LEVEL)")
    .option("--log-format <format>", "text|json (env ONECONNECT_LOG_FORMAT)")
    .showSuggestionAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => writeStdout(s),
      writeErr: (s) => writeStderrLine(s.replace(/\n$/, "")),
      // Plain help: probing colour support would read NO_COLOR/FORCE_COLOR, outside our env list.
      getOutHasColors: () => false,
      getErrHasColors: () => false,
      // Errors are reported once, by src/main.ts, as a single line.
      outputError: () => {},
    })
    .addHelpText("after", EXIT_CODES_HELP);

  program.command("enroll")
    .description("exchange a one-time enrollment token for this host's agent identity")
    .option("--url <platform-url>", "platform base URL (env ONECONNECT_PLATFORM_URL)")
    .option(
      "--token-file <path>",
      "file holding the enrollment token, - for stdin (else env ONECONNECT_ENROLLMENT_TOKEN, else <state-dir>/enrollment.token)",
    )
    .option("--ca-file <path>", "PEM bundle to trust for the platform (env ONECONNECT_CA_FILE)")
    .option(
      "--ca-pin <sha256:hex>",
      "trust the CA the platform presents whose key has this pin; repeatable (env ONECONNECT_CA_PIN, comma-separated)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option("--force", "replace an existing identity (only once the new one is stored)")
    .option("--check", "preflight: test DNS, TCP, TLS, health and clock skew; consumes no token")
    .option("--proxy-pac <url|file>", "proxy auto-config file (env ONECONNECT_PROXY_PAC)")
    .addOption(
      new Option("--timeout <seconds>", "give up retrying after this long")
        .argParser(integerIn(1, 86400, "seconds")).default(120),
    )
    .addHelpText(
      "after",
      example(
        "oneconnect-agent enroll --url https://platform.example.com --token-file /root/token",
        'echo "$TOKEN" | oneconnect-agent enroll --url https://platform.example.com --token-file -',
      ),
    )
    .action(async (opts, cmd: Command) => {
      const ctx = await context(cmd, {
        url: opts.url,
        caFile: opts.caFile,
        proxyPac: opts.proxyPac,
      });
      const caPins = [...opts.caPin as string[]];
      const envPins = proc.env("ONECONNECT_CA_PIN");
      if (caPins.length === 0 && envPins) caPins.push(...envPins.split(","));
      // Before loading enroll's modules: `deno run` builds Deno's root store when it loads them.
      selectRootStore(ctx.config.caFile !== undefined || caPins.length > 0 ? "none" : "system");
      const { enrollCommand } = await import("./enroll.ts");
      await enrollCommand(ctx, {
        tokenFile: opts.tokenFile,
        caPins,
        force: opts.force === true,
        check: opts.check === true,
        timeoutSeconds: opts.timeout,
      });
    });

  program.command("ca-pin")
    .description(
      "print the --ca-pin value (SHA-256 of the public key) of each certificate in a PEM file",
    )
    .argument("<pem-file>", "PEM file with one or more CA certificates")
    .addHelpText("after", example("oneconnect-agent ca-pin /etc/oneconnect/platform-ca.pem"))
    .action(async (file: string) => {
      const { caPinCommand } = await import("./ca_pin.ts");
      await caPinCommand(file, writeStdout);
    });

  program.command("run")
    .description("send heartbeats until stopped (the service process)")
    .option("--once", "send one heartbeat and exit (0 ok, 3 rejected, 4 failed)")
    .option("--auth <mode>", "bearer|mtls (env ONECONNECT_AUTH, default bearer)")
    .option("--proxy-pac <url|file>", "proxy auto-config file (env ONECONNECT_PROXY_PAC)")
    .addOption(
      new Option("--interval <seconds>", "heartbeat interval, overriding the platform's")
        .argParser(integerIn(1, 86400, "seconds")),
    )
    .option(
      "--metrics-file <path>",
      "keep a Prometheus textfile (node_exporter textfile collector) current (env ONECONNECT_METRICS_FILE)",
    )
    .addHelpText(
      "after",
      example(
        "oneconnect-agent run",
        "oneconnect-agent run --once --auth mtls",
        "oneconnect-agent run --metrics-file /var/lib/prometheus/node-exporter/oneconnect_agent.prom",
      ),
    )
    .action(async (opts, cmd: Command) => {
      const ctx = await context(cmd, {
        auth: opts.auth,
        metricsFile: opts.metricsFile,
        proxyPac: opts.proxyPac,
      });
      const { runCommand } = await import("./heartbeat.ts");
      await runCommand(ctx, { once: opts.once === true, intervalSeconds: opts.interval });
    });

  program.command("status")
    .description("show enrollment and heartbeat status (exit 5 when not enrolled)")
    .option("--json", "machine-readable output (same as --format json)")
    .option("--format <format>", "text|json|prometheus (Prometheus text exposition format)")
    .addHelpText(
      "after",
      example("oneconnect-agent status --json", "oneconnect-agent status --format prometheus"),
    )
    .action(async (opts, cmd: Command) => {
      const { STATUS_FORMATS, statusCommand } = await import("./status.ts");
      const format = opts.format ?? (opts.json === true ? "json" : "text");
      if (!(STATUS_FORMATS as readonly string[]).includes(format)) {
        throw new UsageError(
          `Invalid status format ${JSON.stringify(format)} (--format): expected one of ${
            STATUS_FORMATS.join(", ")
          }`,
        );
      }
      if (opts.json === true && format !== "json") {
        throw new UsageError(`Conflicting --json and --format ${format}: give one of them`);
      }
      const ctx = await context(cmd);
      await statusCommand(ctx, { format });
    });

  program.command("inventory")
    .description("print the host telemetry JSON that heartbeats carry")
    .addHelpText("after", example("oneconnect-agent inventory"))
    .action(async (_opts, cmd: Command) => {
      const ctx = await context(cmd);
      const { inventoryCommand } = await import("./telemetry.ts");
      await inventoryCommand(ctx);
    });

  program.command("renew")
    .description("renew the agent certificate now with a new key pair")
    .option("--auth <mode>", "bearer|mtls (env ONECONNECT_AUTH, default bearer)")
    .addHelpText("after", example("oneconnect-agent renew"))
    .action(async (opts, cmd: Command) => {
      const ctx = await context(cmd, { auth: opts.auth });
      const { renewCommand } = await import("./renewal.ts");
      await renewCommand(ctx);
    });

  program.command("unenroll")
    .description("tell the platform to forget this agent, then remove the local identity")
    .option("--yes", "do not ask for confirmation")
    .option("--local-only", "only remove the local identity; do not contact the platform")
    .option("--auth <mode>", "bearer|mtls for the platform call (env ONECONNECT_AUTH)")
    .addHelpText("after", example("oneconnect-agent unenroll --yes"))
    .action(async (opts, cmd: Command) => {
      const ctx = await context(cmd, { auth: opts.auth });
      const { unenrollCommand } = await import("./unenroll.ts");
      await unenrollCommand(ctx, { yes: opts.yes === true, localOnly: opts.localOnly === true });
    });

  return program;
}

/** Parses `argv` and runs the chosen command; throws {@linkcode AgentError}s for main to report. */
export async function runCli(argv: string[], proc: CliProcess): Promise<void> {
  const program = buildCli(proc);
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === "commander.helpDisplayed" || e.code === "commander.version" ||
        e.code === "commander.help"
      ) {
        if (e.code === "commander.help" && argv.length === 0) {
          throw new UsageError("No command given: see oneconnect-agent --help");
        }
        return;
      }
      const message = e.message.replace(/^error:\s*/i, "");
      throw new UsageError(`${message.charAt(0).toUpperCase()}${message.slice(1)} (see --help)`);
    }
    throw e;
  }
}
