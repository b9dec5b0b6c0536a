/**
 * Maps argv to a command: the command tables (flags, help, validation; parsed by
 * `cli_parser.ts`) and the dispatch. Each command's module loads only when it is chosen.
 */
import { type ConfigFlags, denoConfigHost, ENV_VARS, resolveConfig } from "./config/config.ts";
import { integerIn, setting, settingFlag, settingFlagValues } from "./config/settings.ts";
import type { CommandContext } from "./config/context.ts";
import { writeStdout } from "./config/context.ts";
import {
  commandHelp as renderCommandHelp,
  type CommandSpec,
  type FlagSpec,
  type Invocation,
  parseArgv as parseProgramArgv,
  type Program,
  programHelp as renderProgramHelp,
} from "./cli_parser.ts";
import { NotEnrolledError, UsageError } from "./errors.ts";
import { createLogger, type LogFormat, type LogLevel, stderrIsJournal } from "./log.ts";
import { selectRootStore } from "./trust/trust_store.ts";
import { VERSION } from "./version.ts";

/** Seams the CLI needs from the process; `src/main.ts` passes the real ones. */
export interface CliProcess {
  env: (name: string) => string | undefined;
  shutdown: AbortSignal;
  /** Told the effective log level as soon as it is known (it decides whether traces are shown). */
  onLogLevel?: (level: LogLevel) => void;
  /** Told the effective log format as soon as it is known (the final error line follows it). */
  onLogFormat?: (format: LogFormat) => void;
}

const str = (v: unknown) => (typeof v === "string" ? v : undefined);
const num = (v: unknown) => (typeof v === "number" ? v : undefined);

/** Flags every command accepts, before or after the command name. */
export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  settingFlag("stateDir"),
  settingFlag("logLevel"),
  settingFlag("logFormat"),
  settingFlag("systemConfigFile"),
];

/** Every command, in the order `--help` lists them; each loads its module only when chosen. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "enroll",
    description: "exchange a one-time enrollment token for this host's agent identity",
    flags: [
      settingFlag("platformUrl"),
      {
        name: "token-file",
        value: "path",
        help:
          `file holding the enrollment token, - for stdin (else env ${ENV_VARS.enrollmentToken}, else <state-dir>/enrollment.token)`,
      },
      settingFlag("caFile"),
      settingFlag("caPins"),
      { name: "force", help: "replace an existing identity (only once the new one is stored)" },
      {
        name: "check",
        help: "preflight: test DNS, TCP, TLS, health and clock skew; consumes no token",
      },
      settingFlag("proxyPac"),
      {
        name: "timeout",
        value: "seconds",
        help: "give up retrying after this long",
        parse: integerIn(1, 86400, "seconds"),
        default: 120,
      },
    ],
    examples: [
      "oneconnect-agent enroll --url https://platform.example.com --token-file /root/token",
      'echo "$TOKEN" | oneconnect-agent enroll --url https://platform.example.com --token-file -',
    ],
    run: async (f, context) => {
      const ctx = await context();
      const caPins = ctx.config.caPins ?? [];
      // Before loading enroll's modules: `deno run` builds Deno's root store when it loads them.
      selectRootStore(ctx.config.caFile !== undefined || caPins.length > 0 ? "none" : "system");
      const { enrollCommand } = await import("./commands/enroll.ts");
      await enrollCommand(ctx, {
        tokenFile: str(f["token-file"]),
        caPins,
        force: f.force === true,
        check: f.check === true,
        timeoutSeconds: num(f.timeout)!,
      });
    },
  },
  {
    name: "provision",
    description:
      "store the platform URL, CA and enrollment token from the environment for the service (installers call it)",
    flags: [],
    examples: [
      "ONECONNECT_PLATFORM_URL=https://platform.example.com ONECONNECT_ENROLLMENT_TOKEN=... oneconnect-agent provision",
    ],
    run: async (_f, context) => {
      const ctx = await context();
      const { provisionCommand } = await import("./commands/provision.ts");
      await provisionCommand(ctx);
    },
  },
  {
    name: "ca-pin",
    description:
      "print the --ca-pin value (SHA-256 of the public key) of each certificate in a PEM file",
    flags: [],
    args: [{ name: "pem-file", help: "PEM file with one or more CA certificates" }],
    examples: ["oneconnect-agent ca-pin /etc/oneconnect/platform-ca.pem"],
    run: async (_f, _context, args) => {
      const { caPinCommand } = await import("./commands/ca_pin.ts");
      await caPinCommand(args[0]!, writeStdout);
    },
  },
  {
    name: "run",
    description: "send heartbeats until stopped (the service process)",
    flags: [
      { name: "once", help: "send one heartbeat and exit (0 ok, 3 rejected, 4 failed)" },
      settingFlag("auth"),
      settingFlag("intervalSeconds"),
      settingFlag("proxyPac"),
      settingFlag("metricsFile"),
    ],
    examples: [
      "oneconnect-agent run",
      "oneconnect-agent run --once --auth mtls",
      "oneconnect-agent run --metrics-file /var/lib/prometheus/node-exporter/oneconnect_agent.prom",
    ],
    run: async (f, context) => {
      const ctx = await context();
      const { runCommand } = await import("./commands/run.ts");
      await runCommand(ctx, { once: f.once === true });
    },
  },
  {
    name: "status",
    description: "show enrollment and heartbeat status (exit 5 when not enrolled)",
    flags: [
      { name: "json", help: "machine-readable output (same as --format json)" },
      {
        name: "health",
        help:
          "exit with the agent's health: 0 running and heartbeats succeeding, 8 running but failing, 9 not running, 5 not enrolled",
      },
      {
        name: "format",
        value: "format",
        help: "text|json|prometheus (Prometheus text exposition format)",
      },
    ],
    examples: [
      "oneconnect-agent status --json",
      "oneconnect-agent status --format prometheus",
      "oneconnect-agent status --health   # for Nagios-style checks and Ansible",
    ],
    run: async (f, context) => {
      const { STATUS_FORMATS, statusCommand } = await import("./commands/status.ts");
      const format = str(f.format) ?? (f.json === true ? "json" : "text");
      if (!(STATUS_FORMATS as readonly string[]).includes(format)) {
        throw new UsageError(
          `Invalid status format ${JSON.stringify(format)} (--format): expected one of ${
            STATUS_FORMATS.join(", ")
          }`,
        );
      }
      if (f.json === true && format !== "json") {
        throw new UsageError(`Conflicting --json and --format ${format}: give one of them`);
      }
      const ctx = await context();
      await statusCommand(ctx, {
        format: format as (typeof STATUS_FORMATS)[number],
        health: f.health === true,
      });
    },
  },
  {
    name: "inventory",
    description: "print the host telemetry JSON that heartbeats carry",
    flags: [],
    examples: ["oneconnect-agent inventory"],
    run: async (_f, context) => {
      const ctx = await context();
      const { inventoryCommand } = await import("./commands/inventory.ts");
      await inventoryCommand(ctx);
    },
  },
  {
    name: "diagnostics",
    description:
      "write a support bundle (.tar.gz; .zip on Windows) that holds no secret (docs/diagnostics.md)",
    flags: [
      {
        name: "output",
        value: "file|-",
        help:
          "where to write it, - for stdout (default: ./oneconnect-diagnostics-<agent-id>-<time>.tar.gz)",
      },
      { name: "no-network", help: "skip the preflight against the platform" },
    ],
    examples: [
      "sudo oneconnect-agent diagnostics",
      "oneconnect-agent diagnostics --no-network --output /tmp/bundle.tar.gz",
    ],
    run: async (f, context) => {
      const { diagnosticsCommand } = await import("./commands/diagnostics.ts");
      await diagnosticsCommand(context, {
        output: str(f.output),
        network: f["no-network"] !== true,
      });
    },
  },
  {
    name: "renew",
    description: "renew the agent certificate now with a new key pair",
    flags: [settingFlag("auth")],
    examples: ["oneconnect-agent renew"],
    run: async (_f, context) => {
      const ctx = await context();
      const { renewCommand } = await import("./commands/renew.ts");
      await renewCommand(ctx);
    },
  },
  {
    name: "unenroll",
    description: "tell the platform to forget this agent, then remove the local identity",
    flags: [
      { name: "yes", help: "do not ask for confirmation" },
      { name: "local-only", help: "only remove the local identity; do not contact the platform" },
      settingFlag("auth", "bearer|mtls for the platform call"),
    ],
    examples: ["oneconnect-agent unenroll --yes"],
    run: async (f, context) => {
      const ctx = await context();
      const { unenrollCommand } = await import("./commands/unenroll.ts");
      await unenrollCommand(ctx, { yes: f.yes === true, localOnly: f["local-only"] === true });
    },
  },
];

/** Why there is no `--token`: a secret on the command line shows in `ps` and shell history. */
export const TOKEN_FLAG_HINT =
  "the enrollment token is never taken on the command line (ps and shell history would show it); use --token-file <path>, --token-file - to read it from standard input, or the environment variable ONECONNECT_ENROLLMENT_TOKEN";

const PROGRAM: Program = {
  name: "oneconnect-agent",
  description: "OneConnect endpoint agent: enrolls this host and reports telemetry heartbeats.",
  globalFlags: GLOBAL_FLAGS,
  commands: COMMANDS,
  refusedFlags: {
    token: TOKEN_FLAG_HINT,
    "enrollment-token": TOKEN_FLAG_HINT,
  },
};

/** `oneconnect-agent --help`. */
export function programHelp(): string {
  return renderProgramHelp(PROGRAM);
}

/** `oneconnect-agent <command> --help`. */
export function commandHelp(command: CommandSpec): string {
  return renderCommandHelp(PROGRAM, command);
}

/** Parses argv against the tables; throws a `UsageError` naming the bad argument. */
export function parseArgv(argv: readonly string[]): Invocation {
  return parseProgramArgv(PROGRAM, argv);
}

/** The log format argv or the environment asks for, read before argv is parsed (text unless json). */
function earlyLogFormat(
  argv: readonly string[],
  env: (name: string) => string | undefined,
): LogFormat {
  const flag = `--${setting("logFormat").flag!.name}`;
  let asked = env(ENV_VARS.logFormat);
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    if (argv[i] === flag) asked = argv[i + 1];
    else if (argv[i]!.startsWith(`${flag}=`)) asked = argv[i]!.slice(flag.length + 1);
  }
  return asked === "json" ? "json" : "text";
}

/** Parses `argv` and runs the chosen command; throws {@linkcode AgentError}s for main to report. */
export async function runCli(argv: string[], proc: CliProcess): Promise<void> {
  // Before parsing: a bad flag's error must already be a JSON line when JSON was asked for.
  proc.onLogFormat?.(earlyLogFormat(argv, proc.env));
  const invocation = parseArgv(argv);
  if (invocation.kind === "version") return writeStdout(`${PROGRAM.name} ${VERSION}\n`);
  if (invocation.kind === "help") {
    return writeStdout(invocation.command ? commandHelp(invocation.command) : programHelp());
  }
  const { command, flags, args } = invocation;
  // Before agent.json is read: what the flag or the environment asked for.
  const early = str(flags[setting("logLevel").flag!.name]) ?? proc.env(ENV_VARS.logLevel);
  if (early !== undefined) proc.onLogLevel?.(early as LogLevel);

  let stateDir: string | undefined;
  const context = async (extra: ConfigFlags = {}): Promise<CommandContext> => {
    const config = await resolveConfig(
      { ...settingFlagValues(flags), ...extra },
      { ...denoConfigHost, env: proc.env },
    );
    proc.onLogLevel?.(config.logLevel);
    proc.onLogFormat?.(config.logFormat);
    stateDir = config.stateDir;
    return {
      config,
      logger: createLogger({
        level: config.logLevel,
        format: config.logFormat,
        journal: stderrIsJournal(proc.env),
      }),
      stdout: writeStdout,
      env: proc.env,
      stdin: () => Deno.stdin.readable,
      stdinIsTerminal: () => Deno.stdin.isTerminal(),
      shutdown: proc.shutdown,
    };
  };
  try {
    await command.run(flags, context, args);
  } catch (e) {
    if (!(e instanceof NotEnrolledError) || stateDir === undefined) throw e;
    // Only now: the check costs a module and an lstat that a healthy start never needs.
    const { rootIdentityHint } = await import("./state/root_identity.ts");
    const hint = await rootIdentityHint(stateDir, command.name);
    throw hint === null ? e : new NotEnrolledError(hint, { cause: e });
  }
}
