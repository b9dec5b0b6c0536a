/**
 * Every agent setting, declared once: its flag (name, value, help), environment variable,
 * `agent.json` key, zod schema, default and how a raw value is checked. `cli.ts` takes its
 * setting flags from here, `config.ts` resolves the layers row by row, `config_file.ts` builds the
 * `agent.json` schema from the rows, the support bundle lists them, and the settings table in
 * docs/configuration.md is rendered from them (`deno task settings-table`; tests/settings_test.ts
 * fails when the two differ). Options of one command that are not settings (`--once`, `--force`,
 * `--token-file`...) stay in `cli.ts`.
 *
 * @module
 */
import * as z from "../zod.ts";
import { UsageError } from "../errors.ts";
import { LOG_FORMATS, LOG_LEVELS } from "../log.ts";
import { parseProxyUrl } from "../proxy/proxy_hop.ts";
import { parsePlatformUrl } from "../wire/platform_url.ts";

/** The system configuration file (POSIX); Windows has none (ProgramData is the state dir). */
export const SYSTEM_CONFIG_PATH = "/etc/oneconnect-agent/agent.json";

/** A value as a layer gives it: a flag's or variable's text, a parsed number, or a list. */
export type RawValue = string | number | string[];

/** One setting; a row of {@linkcode SETTINGS}. */
export interface SettingSpec {
  /** Its field in the resolved configuration (and in its `sources`). */
  key: string;
  /** The flag, if any; `value` names its value in `--help`. */
  flag?: { name: string; value: string };
  /** `--help`'s text before `(env ...)`; an enum's is its values. */
  summary?: string;
  /** The environment variable, if any. */
  env?: string;
  /** The `agent.json` key, if any (the same in the state directory's and the system one). */
  file?: string;
  /** What `agent.json` may hold for it. */
  schema?: z.ZodMiniType;
  /** Checks a flag's, variable's or file's value; `origin` names where it came from in errors. */
  parse: (raw: RawValue, origin: string) => unknown;
  /** The value when no layer sets one (host-dependent defaults are in `resolveConfig`). */
  default?: string | number;
  /** `--help` says the default after the variable. */
  defaultInHelp?: true;
  /** The allowed values (`--help` and docs list them). */
  values?: readonly string[];
  /** Integer bounds (the flag and the schema check them; the docs show them). */
  range?: readonly [number, number];
  /** Several values: a repeatable flag, a comma-separated variable, an array in `agent.json`. */
  list?: true;
  /** The value may be a URL with credentials: the support bundle shows it without them. */
  url?: true;
  /** Left out of the support bundle's `config.json`. */
  hiddenInDiagnostics?: true;
  /** The docs' default cell (markdown) where {@linkcode default} is absent, or words after it. */
  docDefault?: string;
  /** The docs' environment cell for variables read elsewhere (markdown). */
  docEnv?: string;
}

/** Checks `raw` is one of `allowed`; the error names the setting, the value and its origin. */
function oneOf<T extends string>(allowed: readonly T[], noun: string) {
  return (raw: RawValue, origin: string): T => {
    const value = String(raw);
    if ((allowed as readonly string[]).includes(value)) return value as T;
    throw new UsageError(
      `Invalid ${noun} ${JSON.stringify(value)} (${origin}): expected one of ${allowed.join(", ")}`,
    );
  };
}

/** A flag parser accepting whole numbers from `min` to `max`; throws a message otherwise. */
export function integerIn(min: number, max: number, what: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new Error(`expected ${what} from ${min} to ${max}`);
    }
    return n;
  };
}

/** Checks a PAC location: an http:// URL or a file path (https:// PAC URLs are not supported). */
function parsePacSource(raw: string, origin: string): string {
  const value = raw.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) && !/^(http|file):\/\//i.test(value)) {
    throw new UsageError(
      `Invalid PAC location ${
        JSON.stringify(value)
      } (${origin}): expected an http:// URL or a file path`,
    );
  }
  if (value === "") {
    throw new UsageError(`Invalid PAC location "" (${origin}): expected a URL or path`);
  }
  return value;
}

const nonEmpty = () => z.string().check(z.minLength(1));
const text = (raw: RawValue) => String(raw);

/** A setting that is one of `values` (`noun` names it in errors). */
function choice<const T extends string>(values: readonly T[], noun: string) {
  return { values, schema: z.enum(values), parse: oneOf(values, noun) };
}

/** A setting that is a whole number from `min` to `max`. */
function bounded(min: number, max: number) {
  return {
    range: [min, max] as const,
    schema: z.int().check(z.gte(min), z.lte(max)),
    parse: (raw: RawValue): number => Number(raw),
  };
}

/**
 * The settings, in the order of `agent.json`'s schema (its first invalid field is the one
 * reported) and of the docs table.
 */
export const SETTINGS = [
  {
    key: "stateDir",
    flag: { name: "state-dir", value: "dir" },
    summary: "state directory",
    env: "ONECONNECT_STATE_DIR",
    parse: (raw: RawValue): string => {
      const dir = String(raw);
      if (dir.trim() === "") throw new UsageError('Invalid --state-dir "": expected a path');
      return dir;
    },
    docDefault: "see [State directory](#state-directory-and-files)",
  },
  {
    key: "systemConfigFile",
    flag: { name: "config-file", value: "path" },
    summary: `system configuration file (default ${SYSTEM_CONFIG_PATH}; none on Windows)`,
    parse: text,
    hiddenInDiagnostics: true,
    docDefault: `\`${SYSTEM_CONFIG_PATH}\` (none on Windows)`,
  },
  {
    key: "platformUrl",
    flag: { name: "url", value: "platform-url" },
    summary: "platform base URL",
    env: "ONECONNECT_PLATFORM_URL",
    file: "platform_url",
    schema: nonEmpty(),
    parse: (raw: RawValue, origin: string): URL => parsePlatformUrl(String(raw), origin),
    url: true,
  },
  {
    // The CA file and the pins are one setting, resolved together (config_trust.ts).
    key: "caFile",
    flag: { name: "ca-file", value: "path" },
    summary: "PEM bundle to trust for the platform",
    env: "ONECONNECT_CA_FILE",
    file: "ca_file",
    schema: nonEmpty(),
    parse: text,
    docDefault: "the OS trust store",
  },
  {
    key: "caPins",
    flag: { name: "ca-pin", value: "sha256:hex" },
    summary: "trust the CA the platform presents whose key has this pin; repeatable",
    env: "ONECONNECT_CA_PIN",
    file: "ca_pin",
    /** Pins of the platform's CA (`sha256:<hex>`, checked by enroll), instead of `ca_file`. */
    schema: z.array(nonEmpty()),
    // Not yet validated: enroll checks each pin. The variable is comma-separated.
    parse: (raw: RawValue): string[] =>
      Array.isArray(raw) ? [...raw] : String(raw).split(",").filter((p) => p.trim() !== ""),
    list: true,
    hiddenInDiagnostics: true,
    docDefault: "the OS trust store",
  },
  {
    key: "logLevel",
    flag: { name: "log-level", value: "level" },
    env: "ONECONNECT_LOG_LEVEL",
    file: "log_level",
    ...choice(LOG_LEVELS, "log level"),
    default: "info",
  },
  {
    key: "logFormat",
    flag: { name: "log-format", value: "format" },
    env: "ONECONNECT_LOG_FORMAT",
    file: "log_format",
    ...choice(LOG_FORMATS, "log format"),
    default: "text",
  },
  {
    key: "auth",
    flag: { name: "auth", value: "mode" },
    env: "ONECONNECT_AUTH",
    file: "auth",
    // How heartbeats authenticate: the bearer token, or the client certificate (mutual TLS).
    ...choice(["bearer", "mtls"], "auth mode"),
    default: "bearer",
    defaultInHelp: true,
  },
  {
    key: "proxyUrl",
    file: "proxy_url",
    schema: nonEmpty(),
    // Named by the file that set it, like every other agent.json value.
    parse: (raw: RawValue, origin: string): URL => parseProxyUrl(String(raw), origin),
    url: true,
    docEnv: "`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`",
    docDefault: "none",
  },
  {
    key: "proxyPac",
    flag: { name: "proxy-pac", value: "url|file" },
    summary: "proxy auto-config file",
    env: "ONECONNECT_PROXY_PAC",
    file: "proxy_pac_url",
    schema: nonEmpty(),
    parse: (raw: RawValue, origin: string): string => parsePacSource(String(raw), origin),
    url: true,
    docDefault: "none (see [Proxies](networks.md#proxies-pac-and-os-settings))",
  },
  {
    key: "timeoutSeconds",
    file: "timeout_seconds",
    ...bounded(1, 600),
    default: 15,
    docDefault: "per request",
  },
  {
    key: "intervalSeconds",
    flag: { name: "interval", value: "seconds" },
    summary: "heartbeat interval, overriding the platform's",
    file: "interval_seconds",
    ...bounded(1, 86400),
    docDefault: "platform's, else 60",
  },
  {
    key: "metricsFile",
    flag: { name: "metrics-file", value: "path" },
    summary: "keep a Prometheus textfile (node_exporter textfile collector) current",
    env: "ONECONNECT_METRICS_FILE",
    file: "metrics_file",
    schema: nonEmpty(),
    parse: text,
    docDefault: "none (see [Monitoring](operations.md#monitoring))",
  },
] as const satisfies readonly SettingSpec[];

type Row = (typeof SETTINGS)[number];
/** A setting's key. */
export type SettingKey = Row["key"];
type ValueOf<R> = R extends { parse: (...args: never[]) => infer T } ? T : never;
type Always = Extract<Row, { default: unknown } | { key: "stateDir" }>;
type Maybe = Exclude<Row, Always>;

/** Each setting's resolved value; those with a default always have one. */
export type SettingValues =
  & { [R in Always as R["key"]]: ValueOf<R> }
  & { [R in Maybe as R["key"]]?: ValueOf<R> };

/** How heartbeats authenticate. */
export type AuthMode = SettingValues["auth"];

type WithFile = Extract<Row, { file: string }>;
/** The shape of `agent.json`: each setting's key with its schema, optional. */
export type FileConfigShape = {
  [R in WithFile as R["file"]]: z.ZodMiniOptional<R["schema"]>;
};

/** The `agent.json` schema shape, from the rows that have a key there. */
export function fileConfigShape(): FileConfigShape {
  const shape: Record<string, z.ZodMiniType> = {};
  for (const s of SETTINGS as readonly SettingSpec[]) {
    if (s.file !== undefined && s.schema !== undefined) shape[s.file] = z.optional(s.schema);
  }
  return shape as FileConfigShape;
}

/** The row of `key`. */
export function setting(key: SettingKey): SettingSpec {
  return (SETTINGS as readonly SettingSpec[]).find((s) => s.key === key)!;
}

/** The flag table entry of a setting (a `cli_parser.ts` FlagSpec). */
export interface SettingFlag {
  name: string;
  value: string;
  help: string;
  parse?: (raw: string) => number;
  repeatable?: boolean;
}

/**
 * The flag of setting `key` for the parser and `--help`; `summary` replaces the row's own text
 * for one command (then the default is not repeated).
 */
export function settingFlag(key: SettingKey, summary?: string): SettingFlag {
  const s = setting(key);
  const { name, value } = s.flag!;
  const env = s.env === undefined
    ? ""
    : ` (env ${s.env}${s.list ? ", comma-separated" : ""}${
      s.defaultInHelp && summary === undefined ? `, default ${s.default}` : ""
    })`;
  return {
    name,
    value,
    help: `${summary ?? s.summary ?? s.values!.join("|")}${env}`,
    ...(s.range ? { parse: integerIn(s.range[0], s.range[1], value) } : {}),
    ...(s.list ? { repeatable: true } : {}),
  };
}

/** The configuration a command's parsed flags give: each setting flag's value by setting key. */
export function settingFlagValues(
  flags: Readonly<Record<string, unknown>>,
): Partial<Record<SettingKey, RawValue>> {
  const out: Partial<Record<SettingKey, RawValue>> = {};
  for (const s of SETTINGS) {
    if (!("flag" in s)) continue;
    const value = flags[s.flag.name];
    if (value !== undefined) out[s.key] = value as RawValue;
  }
  return out;
}
