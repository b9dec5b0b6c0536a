/**
 * A small table-driven argument parser: a {@linkcode Program}'s tables are its flags, its help text
 * and its validation at once. No argument library: a steady `run` must not pay for one (an npm
 * argument library loads Deno's npm/Node layer; docs/footprint.md has the cost).
 *
 * @module
 */
import type { ConfigFlags } from "./config/config.ts";
import type { CommandContext } from "./config/context.ts";
import { errorMessage, EXIT_CODE_MEANINGS, UsageError } from "./errors.ts";
import { nearestName } from "./nearest_name.ts";

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

/** A whole command line interface: its name, its global flags and its commands, in help order. */
export interface Program {
  name: string;
  /** The one-line description at the top of `--help`. */
  description: string;
  globalFlags: readonly FlagSpec[];
  commands: readonly CommandSpec[];
  /**
   * Flags people try that do not exist, by name without dashes, and what to use instead (e.g.
   * `token`: a secret never goes on the command line). The value given is never echoed.
   */
  refusedFlags?: Readonly<Record<string, string>>;
}

/** The values of a repeatable flag (empty when it was not given). */
export const flagList = (v: unknown): string[] => (Array.isArray(v) ? [...v as string[]] : []);

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

/** `<program> --help`. */
export function programHelp(program: Program): string {
  return [
    `Usage: ${program.name} [options] [command]`,
    "",
    program.description,
    "",
    "Options:",
    columns([...flagRows([VERSION_FLAG, ...program.globalFlags, HELP_FLAG])]),
    "",
    "Commands:",
    columns([
      ...program.commands.map((c): [string, string] => [
        `${c.name}${c.flags.length > 0 ? " [options]" : ""}${
          (c.args ?? []).map((a) => ` <${a.name}>`).join("")
        }`,
        c.description,
      ]),
      ["help [command]", "display help for command"],
      ["version", "print the version and exit (same as --version)"],
    ]),
    "",
    exitCodesHelp(),
    "",
  ].join("\n");
}

/** `<program> <command> --help`. */
export function commandHelp(program: Program, command: CommandSpec): string {
  return [
    `Usage: ${program.name} ${command.name} [options]${
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
    `Global options (${
      program.globalFlags.map((f) => `--${f.name}`).join(", ")
    }): see ${program.name} --help`,
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

function unknownCommand(program: Program, name: string): UsageError {
  const near = nearestName(name, [...program.commands.map((c) => c.name), "help", "version"]);
  return usage(`Unknown command '${name}'${near ? `; did you mean '${near}'?` : ""}`);
}

/** An unknown `--name`: what to use instead, or the nearest flag; never the value given with it. */
function unknownFlag(program: Program, key: string, known: readonly FlagSpec[]): UsageError {
  const name = key.replace(/^-+/, "");
  const instead = program.refusedFlags?.[name];
  if (instead !== undefined) return usage(`Unknown option '${key}'; ${instead}`);
  const near = key.startsWith("--")
    ? nearestName(name, [...known.map((f) => f.name), "help", "version"])
    : undefined;
  return usage(`Unknown option '${key}'${near ? `; did you mean '--${near}'?` : ""}`);
}

/** Parses argv against the tables; throws a {@linkcode UsageError} naming the bad argument. */
export function parseArgv(program: Program, argv: readonly string[]): Invocation {
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
          const target = named === undefined
            ? undefined
            : program.commands.find((c) => c.name === named);
          if (named !== undefined && target === undefined) throw unknownCommand(program, named);
          return { kind: "help", command: target };
        }
        if (arg === "version") {
          version = true;
          continue;
        }
        command = program.commands.find((c) => c.name === arg);
        if (command === undefined) throw unknownCommand(program, arg);
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
    const known = [...(command?.flags ?? []), ...program.globalFlags];
    const spec = known.find((f) => f.name === name);
    if (spec === undefined) throw unknownFlag(program, key, known);
    if (eq >= 0 && spec.value === undefined) throw usage(`Option '${key}' takes no value`);
    if (spec.value === undefined) {
      flags[spec.name] = true;
      continue;
    }
    const raw = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (raw === undefined) throw usage(`Option '${flagTerm(spec)}' argument missing`);
    try {
      const value = spec.parse ? spec.parse(raw) : raw;
      flags[spec.name] = spec.repeatable ? [...flagList(flags[spec.name]), String(value)] : value;
    } catch (e) {
      throw usage(
        `Option '${flagTerm(spec)}' argument '${raw}' is invalid. ${errorMessage(e)}`,
      );
    }
  }
  if (version) return { kind: "version" };
  if (help) return { kind: "help", command };
  if (command === undefined) throw new UsageError(`No command given: see ${program.name} --help`);
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
