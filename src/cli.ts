/**
 * Maps argv to a command with a small table-driven parser: the tables below are the flags, the
 * help text and the validation at once. No argument library: a steady `run` must not pay for
 * one (an npm argument library loads Deno's npm/Node layer; README "Footprint" has the cost).
 */
import { type ConfigFlags, denoConfigHost, ENV_VARS, resolveConfig } from "./config.ts";
import type { CommandContext } from "./context.ts";
import { writeStdout } from "./context.ts";
import { errorMessage, EXIT_CODE_MEANINGS, UsageError } from "./errors.ts";
import { createLogger, type LogLevel } from "./log.ts";
import { selectRootStore } from "./trust/trust_store.ts";
import { VERSION } from "./version.ts";

const PROGRAM = "oneconnect-agent";

/** Seams the CLI needs from the process; `src/main.ts` passes the real ones. */
export interface CliProcess {
  env: (name: string) => string | undefined;
  shutdown: AbortSignal;
  /** Told the effective log level as soon as it is known (it decides whether traces are shown). */
  onLogLevel?: (level: LogLevel) => void;
}

/** Parsed flag values by flag name without dashes, e.g. `{ "state-dir": "/x", once: true }`. */
export type FlagValues = Record<string, string | number | boolean | string[] | undefined>;

/** One flag: a boolean switch, or a flag taking the value named by `value`. */
export interface FlagSpec {
  /** Long name without dashes, e.g. `state-dir`. */
  name: string;
  /** Placeholder of the value, e.g. `dir`; absent for a boolean switch. */
  value?: string;
  help: string;
  /** Turns the raw value into the parsed one; throws a message on a bad value. */
  parse?: (raw: string) => number;
  default?: number;
  /** May be given several times; the values are collected in order (a `string[]`). */
  repeatable?: boolean;
}

/** A required positional argument, e.g. `<pem-file>`. */
export interface ArgumentSpec {
  name: string;
  help: string;
}

/** One command: its flags, help and what it runs. */
export interface CommandSpec {
  name: string;
  description: string;
  flags: readonly FlagSpec[];
  /** Required positional arguments, in order. */
  args?: readonly ArgumentSpec[];
  examples: readonly string[];
  run: (
    flags: FlagValues,
    context: (extra?: ConfigFlags) => Promise<CommandContext>,
    args: string[],
  ) => Promise<void>;
}

function integerIn(min: number, max: number, what: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new Error(`expected ${what} from ${min} to ${max}`);
    }
    return n;
  };
}

const str = (v: unknown) => (typeof v === "string" ? v : undefined);
const list = (v: unknown) => (Array.isArray(v) ? [...v as string[]] : []);
const num = (v: unknown) => (typeof v === "number" ? v : undefined);

/** Flags every command accepts, before or after the command name. */
export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: "state-dir", value: "dir", help: "state directory (env ONECONNECT_STATE_DIR)" },
  {
    name: "log-level",
    value: "level",
    help: "debug|info|warn|error (env ONECONNECT_LOG_LEVEL)",
  },
  { name: "log-format", value: "format", help: "text|json (env ONECONNECT_LOG_FORMAT)" },
];

const proxyPacFlag: FlagSpec = {
  name: "proxy-pac",
  value: "url|file",
  help: "proxy auto-config file (env ONECONNECT_PROXY_PAC)",
};

const authFlag = (help = "bearer|mtls (env ONECONNECT_AUTH, default bearer)"): FlagSpec => ({
  name: "auth",
  value: "mode",
  help,
});

/** Every command, in the order `--help` lists them; each loads its module only when chosen. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "enroll",
    description: "exchange a one-time enrollment token for this host's agent identity",
    flags: [
      {
        name: "url",
        value: "platform-url",
        help: "platform base URL (env ONECONNECT_PLATFORM_URL)",
      },
      {
        name: "token-file",
        value: "path",
        help:
          "file holding the enrollment token, - for stdin (else env ONECONNECT_ENROLLMENT_TOKEN, else <state-dir>/enrollment.token)",
      },
      {
        name: "ca-file",
        value: "path",
        help: "PEM bundle to trust for the platform (env ONECONNECT_CA_FILE)",
      },
      {
        name: "ca-pin",
        value: "sha256:hex",
        help:
          "trust the CA the platform presents whose key has this pin; repeatable (env ONECONNECT_CA_PIN, comma-separated)",
        repeatable: true,
      },
      { name: "force", help: "replace an existing identity (only once the new one is stored)" },
      {
        name: "check",
        help: "preflight: test DNS, TCP, TLS, health and clock skew; consumes no token",
      },
      proxyPacFlag,
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
      const ctx = await context({
        url: str(f.url),
        caFile: str(f["ca-file"]),
        proxyPac: str(f["proxy-pac"]),
      });
      const caPins = list(f["ca-pin"]);
      const envPins = ctx.env("ONECONNECT_CA_PIN");
      if (caPins.length === 0 && envPins) caPins.push(...envPins.split(","));
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
      authFlag(),
      {
        name: "interval",
        value: "seconds",
        help: "heartbeat interval, overriding the platform's",
        parse: integerIn(1, 86400, "seconds"),
      },
      proxyPacFlag,
      {
        name: "metrics-file",
        value: "path",
        help:
          "keep a Prometheus textfile (node_exporter textfile collector) current (env ONECONNECT_METRICS_FILE)",
      },
    ],
    examples: [
      "oneconnect-agent run",
      "oneconnect-agent run --once --auth mtls",
      "oneconnect-agent run --metrics-file /var/lib/prometheus/node-exporter/oneconnect_agent.prom",
    ],
    run: async (f, context) => {
      const ctx = await context({
        auth: str(f.auth),
        metricsFile: str(f["metrics-file"]),
        proxyPac: str(f["proxy-pac"]),
      });
      const { runCommand } = await import("./commands/run.ts");
      await runCommand(ctx, { once: f.once === true, intervalSeconds: num(f.interval) });
    },
  },
  {
    name: "status",
    description: "show enrollment and heartbeat status (exit 5 when not enrolled)",
    flags: [
      { name: "json", help: "machine-readable output (same as --format json)" },
      {
        name: "format",
        value: "format",
        help: "text|json|prometheus (Prometheus text exposition format)",
      },
    ],
    examples: ["oneconnect-agent status --json", "oneconnect-agent status --format prometheus"],
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
      await statusCommand(ctx, { format: format as (typeof STATUS_FORMATS)[number] });
    },
  },
  {
    name: "inventory",
    description: "print the host telemetry JSON that heartbeats carry",
    flags: [],
    examples: ["oneconnect-agent inventory"],
    run: async (_f, context) => {
      const ctx = await context();
      const { inventoryCommand } = await import("./telemetry/collector.ts");
      await inventoryCommand(ctx);
    },
  },
  {
    name: "renew",
    description: "renew the agent certificate now with a new key pair",
    flags: [authFlag()],
    examples: ["oneconnect-agent renew"],
    run: async (f, context) => {
      const ctx = await context({ auth: str(f.auth) });
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
      authFlag("bearer|mtls for the platform call (env ONECONNECT_AUTH)"),
    ],
    examples: ["oneconnect-agent unenroll --yes"],
    run: async (f, context) => {
      const ctx = await context({ auth: str(f.auth) });
      const { unenrollCommand } = await import("./commands/unenroll.ts");
      await unenrollCommand(ctx, { yes: f.yes === true, localOnly: f["local-only"] === true });
    },
  },
];

const HELP_FLAG: FlagSpec = { name: "help", help: "show help" };
const VERSION_FLAG: FlagSpec = { name: "version", help: "print the version and exit" };
const SHORT: Record<string, string> = { "-h": "help", "-V": "version" };

function flagTerm(f: FlagSpec): string {
  const short = Object.entries(SHORT).find(([, long]) => long === f.name)?.[0];
  return `${short ? `${short}, ` : ""}--${f.name}${f.value ? ` <${f.value}>` : ""}`;
}

/** Words of `text` in lines of at most `width` characters (a longer word keeps its own line). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const word of text.split(" ")) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) {
      lines[lines.length - 1] = `${last} ${word}`;
    } else lines.push(word);
  }
  return lines;
}

/** Two aligned columns, the second wrapped at 80 characters and indented under itself. */
function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([term]) => term.length)) + 2;
  const indent = `\n  ${" ".repeat(width)}`;
  return rows.map(([term, text]) =>
    `  ${term.padEnd(width)}${wrap(text, Math.max(40, 78 - width)).join(indent)}`
  ).join("\n");
}

function flagRows(flags: readonly FlagSpec[]): [string, string][] {
  return flags.map((f) => [
    flagTerm(f),
    f.default === undefined ? f.help : `${f.help} (default: ${f.default})`,
  ]);
}

/** The exit-code section of `--help`, generated from {@linkcode EXIT_CODE_MEANINGS}. */
export function exitCodesHelp(): string {
  return `Exit codes:\n${
    EXIT_CODE_MEANINGS.map(([code, meaning]) => `  ${code}  ${meaning.replace(/\n/g, "\n     ")}`)
      .join("\n")
  }`;
}

/** `oneconnect-agent --help`. */
export function programHelp(): string {
  return [
    `Usage: ${PROGRAM} [options] [command]`,
    "",
    "OneConnect endpoint agent: enrolls this host and reports telemetry heartbeats.",
    "",
    "Options:",
    columns([...flagRows([VERSION_FLAG, ...GLOBAL_FLAGS, HELP_FLAG])]),
    "",
    "Commands:",
    columns([
      ...COMMANDS.map((c): [string, string] => [
        `${c.name}${c.flags.length > 0 ? " [options]" : ""}${
          (c.args ?? []).map((a) => ` <${a.name}>`).join("")
        }`,
        c.description,
      ]),
      ["help [command]", "display help for command"],
    ]),
    "",
    exitCodesHelp(),
    "",
  ].join("\n");
}

/** `oneconnect-agent <command> --help`. */
export function commandHelp(command: CommandSpec): string {
  return [
    `Usage: ${PROGRAM} ${command.name} [options]${
      (command.args ?? []).map((a) => ` <${a.name}>`).join("")
    }`,
    "",
    command.description,
    "",
    ...(command.args?.length
      ? ["Arguments:", columns(command.args.map((a) => [a.name, a.help])), ""]
      : []),
    "Options:",
    columns(flagRows([...command.flags, HELP_FLAG])),
    "",
    `Global options (${GLOBAL_FLAGS.map((f) => `--${f.name}`).join(", ")}): see ${PROGRAM} --help`,
    "",
    "Example:",
    ...command.examples.map((l) => `  $ ${l}`),
    "",
  ].join("\n");
}

/** What argv asks for. */
export type Invocation =
  | { kind: "help"; command?: CommandSpec }
  | { kind: "version" }
  | { kind: "command"; command: CommandSpec; flags: FlagValues; args: string[] };

function usage(message: string): UsageError {
  return new UsageError(`${message} (see --help)`);
}

/** Parses argv against the tables; throws a {@linkcode UsageError} naming the bad argument. */
export function parseArgv(argv: readonly string[]): Invocation {
  let command: CommandSpec | undefined;
  const flags: FlagValues = {};
  let help = false;
  let version = false;
  const extra: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      extra.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      if (command === undefined) {
        if (arg === "help") {
          const named = argv[i + 1];
          const target = named === undefined ? undefined : COMMANDS.find((c) => c.name === named);
          if (named !== undefined && target === undefined) {
            throw usage(`Unknown command '${named}'`);
          }
          return { kind: "help", command: target };
        }
        command = COMMANDS.find((c) => c.name === arg);
        if (command === undefined) throw usage(`Unknown command '${arg}'`);
      } else {
        extra.push(arg);
      }
      continue;
    }
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const key = eq >= 0 ? arg.slice(0, eq) : arg;
    const name = SHORT[key] ?? (key.startsWith("--") ? key.slice(2) : undefined);
    if (name === "help") {
      help = true;
      continue;
    }
    if (name === "version" && command === undefined && eq < 0) {
      version = true;
      continue;
    }
    const spec = [...(command?.flags ?? []), ...GLOBAL_FLAGS].find((f) => f.name === name);
    if (spec === undefined || (eq >= 0 && spec.value === undefined)) {
      throw usage(`Unknown option '${arg}'`);
    }
    if (spec.value === undefined) {
      flags[spec.name] = true;
      continue;
    }
    const raw = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (raw === undefined) throw usage(`Option '${flagTerm(spec)}' argument missing`);
    try {
      const value = spec.parse ? spec.parse(raw) : raw;
      flags[spec.name] = spec.repeatable ? [...list(flags[spec.name]), String(value)] : value;
    } catch (e) {
      throw usage(
        `Option '${flagTerm(spec)}' argument '${raw}' is invalid. ${errorMessage(e)}`,
      );
    }
  }
  if (version) return { kind: "version" };
  if (help) return { kind: "help", command };
  if (command === undefined) throw new UsageError(`No command given: see ${PROGRAM} --help`);
  const wanted = command.args ?? [];
  if (extra.length > wanted.length) {
    throw usage(
      `Too many arguments for '${command.name}'. Expected ${wanted.length} argument${
        wanted.length === 1 ? "" : "s"
      } but got ${extra.length}.`,
    );
  }
  if (extra.length < wanted.length) {
    throw usage(`Missing required argument '${wanted[extra.length]!.name}'`);
  }
  for (const f of command.flags) {
    if (f.default !== undefined && flags[f.name] === undefined) flags[f.name] = f.default;
  }
  return { kind: "command", command, flags, args: extra };
}

/** Parses `argv` and runs the chosen command; throws {@linkcode AgentError}s for main to report. */
export async function runCli(argv: string[], proc: CliProcess): Promise<void> {
  const invocation = parseArgv(argv);
  if (invocation.kind === "version") return writeStdout(`${PROGRAM} ${VERSION}\n`);
  if (invocation.kind === "help") {
    return writeStdout(invocation.command ? commandHelp(invocation.command) : programHelp());
  }
  const { command, flags, args } = invocation;
  // Before agent.json is read: what the flag or the environment asked for.
  const early = str(flags["log-level"]) ?? proc.env(ENV_VARS.logLevel);
  if (early !== undefined) proc.onLogLevel?.(early as LogLevel);
  const context = async (extra: ConfigFlags = {}): Promise<CommandContext> => {
    const config = await resolveConfig({
      stateDir: str(flags["state-dir"]),
      logLevel: str(flags["log-level"]),
      logFormat: str(flags["log-format"]),
      ...extra,
    }, { ...denoConfigHost, env: proc.env });
    proc.onLogLevel?.(config.logLevel);
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
  await command.run(flags, context, args);
}
