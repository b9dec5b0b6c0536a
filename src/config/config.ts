import { UsageError } from "../errors.ts";
import { join } from "../file_system.ts";
import {
  type AuthMode,
  AuthModeSchema,
  CONFIG_FILE_NAME,
  type ConfigFileHost,
  type FileConfig,
  parseConfigText,
  readFileConfig,
} from "./config_file.ts";
import { parseProxyUrl } from "../proxy/proxy_hop.ts";
import { SYSTEM_STATE_DIR_ENV, systemStateDir } from "../state/system_state_dir.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log.ts";
import { denoOwnershipHost } from "../state/ownership.ts";
import { nearestTrust } from "./config_trust.ts";
import { readSystemConfigText, SYSTEM_CONFIG_PATH } from "./system_config.ts";
import { parsePlatformUrl } from "../wire/platform_url.ts";

/** Where a resolved value came from (`system`: the system configuration file under /etc). */
export type ConfigSource = "flag" | "env" | "file" | "system" | "default";

/** Flags that map onto configuration (global and per-command). */
export interface ConfigFlags {
  stateDir?: string;
  logLevel?: string;
  logFormat?: string;
  url?: string;
  caFile?: string;
  /** `--ca-pin` values (not yet validated). */
  caPins?: string[];
  auth?: string;
  metricsFile?: string;
  proxyPac?: string;
  /** Leaves both `agent.json` files out (`diagnostics`, to report on a host whose file is invalid). */
  ignoreFileConfig?: boolean;
  /** `--config-file`: the system configuration file instead of {@linkcode SYSTEM_CONFIG_PATH}. */
  configFile?: string;
}

/**
 * The effective configuration after precedence: flag > environment > agent.json (state dir) >
 * system agent.json > default.
 */
export interface ResolvedConfig {
  stateDir: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  platformUrl?: URL;
  caFile?: string;
  /** CA pins (not yet validated); never together with `caFile`: the nearer layer's trust wins. */
  caPins?: string[];
  /** The system configuration file consulted, if any (none on Windows). */
  systemConfigFile?: string;
  auth: AuthMode;
  proxyUrl?: URL;
  /** PAC file (http:// URL or path), consulted after `proxyUrl` and the environment. */
  proxyPac?: string;
  timeoutSeconds: number;
  intervalSeconds?: number;
  /** Prometheus textfile `run` keeps current (`--metrics-file`), if any. */
  metricsFile?: string;
  sources: Record<string, ConfigSource>;
}

/** What the resolver needs from the host, passed in so every layer is testable. */
export interface ConfigHost extends ConfigFileHost {
  env: (name: string) => string | undefined;
  os: typeof Deno.build.os;
  uid: () => number | null;
  /** The system configuration file; absent: no system layer (as on Windows). */
  systemConfigPath?: string;
}

/** The real host: Deno's environment, OS and file system. */
export const denoConfigHost: ConfigHost = {
  env: (name) => Deno.env.get(name),
  os: Deno.build.os,
  uid: () => Deno.uid(),
  ownership: denoOwnershipHost,
  ...(Deno.build.os === "windows" ? {} : { systemConfigPath: SYSTEM_CONFIG_PATH }),
};

/** Environment variable for each configurable field. */
export const ENV_VARS = {
  stateDir: "ONECONNECT_STATE_DIR",
  platformUrl: "ONECONNECT_PLATFORM_URL",
  enrollmentToken: "ONECONNECT_ENROLLMENT_TOKEN",
  caFile: "ONECONNECT_CA_FILE",
  caPin: "ONECONNECT_CA_PIN",
  logLevel: "ONECONNECT_LOG_LEVEL",
  logFormat: "ONECONNECT_LOG_FORMAT",
  auth: "ONECONNECT_AUTH",
  metricsFile: "ONECONNECT_METRICS_FILE",
  proxyPac: "ONECONNECT_PROXY_PAC",
  systemStateDir: SYSTEM_STATE_DIR_ENV,
} as const;

/** The platform's default state directory for this OS and user. */
export function defaultStateDir(host: Pick<ConfigHost, "env" | "os" | "uid">): string {
  const nonEmpty = (name: string) => {
    const v = host.env(name);
    return v && v.trim() !== "" ? v : undefined;
  };
  if (host.os === "windows") {
    return `${nonEmpty("ProgramData") ?? "C:\\ProgramData"}\\OneConnect\\Agent`;
  }
  if (host.uid() === 0) return systemStateDir(host)!;
  if (host.os === "darwin") {
    const home = nonEmpty("HOME");
    if (!home) throw noHome();
    return join(home, "Library", "Application Support", "OneConnect Agent");
  }
  const xdg = nonEmpty("XDG_STATE_HOME");
  if (xdg) return join(xdg, "oneconnect-agent");
  const home = nonEmpty("HOME");
  if (!home) throw noHome();
  return join(home, ".local", "state", "oneconnect-agent");
}

function noHome(): UsageError {
  return new UsageError(
    "Cannot choose a state directory: HOME is not set; pass --state-dir or set ONECONNECT_STATE_DIR",
  );
}

/** Checks a PAC location: an http:// URL or a file path (https:// PAC URLs are not supported). */
export function parsePacSource(raw: string, origin: string): string {
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

function oneOf<T extends string>(
  allowed: readonly T[],
  raw: string,
  name: string,
  origin: string,
): T {
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw new UsageError(
    `Invalid ${name} ${JSON.stringify(raw)} (${origin}): expected one of ${allowed.join(", ")}`,
  );
}

/**
 * Resolves the effective configuration: flag > environment > agent.json (state dir) > system
 * agent.json > default.
 */
export async function resolveConfig(
  flags: ConfigFlags,
  host: ConfigHost = denoConfigHost,
): Promise<ResolvedConfig> {
  const sources: Record<string, ConfigSource> = {};
  const pick = (
    key: string,
    flag: string | undefined,
    envName: string,
    fileKey: keyof FileConfig | undefined,
  ): [string | number | undefined, string] => {
    if (flag !== undefined) {
      sources[key] = "flag";
      return [flag, `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`];
    }
    const env = host.env(envName);
    if (env !== undefined && env !== "") {
      sources[key] = "env";
      return [env, envName];
    }
    const value = fileKey === undefined ? undefined : file[fileKey];
    if (value !== undefined && !Array.isArray(value)) {
      const own = fileKey! in stateFile;
      sources[key] = own ? "file" : "system";
      return [value, own ? CONFIG_FILE_NAME : systemConfigFile!];
    }
    sources[key] = "default";
    return [undefined, "default"];
  };

  const [rawStateDir] = pick("stateDir", flags.stateDir, ENV_VARS.stateDir, undefined);
  const stateDir = rawStateDir !== undefined ? String(rawStateDir) : defaultStateDir(host);
  if (stateDir.trim() === "") throw new UsageError('Invalid --state-dir "": expected a path');

  const stateFile = flags.ignoreFileConfig ? {} : await readFileConfig(stateDir, host);
  const systemConfigFile = flags.configFile ?? host.systemConfigPath;
  const systemText = systemConfigFile === undefined || flags.ignoreFileConfig
    ? undefined
    : await readSystemConfigText(systemConfigFile, host.ownership ?? denoOwnershipHost, host.os);
  const system = systemText === undefined ? {} : parseConfigText(systemConfigFile!, systemText);
  // Per key, the state directory's file wins over the system one.
  const file: FileConfig = { ...system, ...stateFile };

  const [level, levelOrigin] = pick("logLevel", flags.logLevel, ENV_VARS.logLevel, "log_level");
  const [fmt, fmtOrigin] = pick("logFormat", flags.logFormat, ENV_VARS.logFormat, "log_format");
  const [url, urlOrigin] = pick("url", flags.url, ENV_VARS.platformUrl, "platform_url");
  const envPins = host.env(ENV_VARS.caPin)?.split(",").filter((p) => p.trim() !== "");
  const [trustSource, trust] = nearestTrust<ConfigSource>([
    ["flag", { caFile: flags.caFile, caPins: flags.caPins }],
    ["env", { caFile: host.env(ENV_VARS.caFile) || undefined, caPins: envPins }],
    ["file", { caFile: stateFile.ca_file, caPins: stateFile.ca_pin }],
    ["system", { caFile: system.ca_file, caPins: system.ca_pin }],
  ]) ?? ["default", {}];
  sources.caFile = trustSource;
  const [auth, authOrigin] = pick("auth", flags.auth, ENV_VARS.auth, "auth");
  const [metricsFile] = pick(
    "metricsFile",
    flags.metricsFile,
    ENV_VARS.metricsFile,
    "metrics_file",
  );
  const [pac, pacOrigin] = pick("proxyPac", flags.proxyPac, ENV_VARS.proxyPac, "proxy_pac_url");
  // Settings only the agent.json files set.
  for (
    const [key, fileKey] of [
      ["proxyUrl", "proxy_url"],
      ["timeoutSeconds", "timeout_seconds"],
      ["intervalSeconds", "interval_seconds"],
    ] as const
  ) {
    sources[key] = file[fileKey] === undefined
      ? "default"
      : fileKey in stateFile
      ? "file"
      : "system";
  }

  return {
    stateDir,
    logLevel: level === undefined
      ? "info"
      : oneOf(LOG_LEVELS, String(level), "log level", levelOrigin),
    logFormat: fmt === undefined
      ? "text"
      : oneOf(LOG_FORMATS, String(fmt), "log format", fmtOrigin),
    platformUrl: url === undefined ? undefined : parsePlatformUrl(String(url), urlOrigin),
    ...trust,
    systemConfigFile,
    auth: auth === undefined
      ? "bearer"
      : oneOf(AuthModeSchema.options, String(auth), "auth mode", authOrigin),
    proxyUrl: file.proxy_url === undefined
      ? undefined
      : parseProxyUrl(file.proxy_url, CONFIG_FILE_NAME),
    proxyPac: pac === undefined ? undefined : parsePacSource(String(pac), pacOrigin),
    timeoutSeconds: file.timeout_seconds ?? 15,
    intervalSeconds: file.interval_seconds,
    metricsFile: metricsFile === undefined ? undefined : String(metricsFile),
    sources,
  };
}
