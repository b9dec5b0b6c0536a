import * as z from "./zod.ts";
import { errorMessage, UsageError } from "./errors.ts";
import { type HandleRead, join, type ReadRefusal, readRegularFile } from "./file_system.ts";
import { parseJsonDocument } from "./json_document.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";
import {
  auditConfigFile,
  auditStateDirOwnership,
  denoOwnershipHost,
  type OwnershipHost,
} from "./state/ownership.ts";

/** How heartbeats authenticate: the bearer token, or the client certificate (mutual TLS). */
export const AuthModeSchema = z.enum(["bearer", "mtls"]);
/** An authentication mode. */
export type AuthMode = z.infer<typeof AuthModeSchema>;

/** `agent.json` in the state directory: the lowest-precedence layer an operator can set. */
export const FileConfigSchema = z.strictObject({
  platform_url: z.optional(z.string().check(z.minLength(1))),
  ca_file: z.optional(z.string().check(z.minLength(1))),
  log_level: z.optional(z.enum(LOG_LEVELS)),
  log_format: z.optional(z.enum(LOG_FORMATS)),
  auth: z.optional(AuthModeSchema),
  proxy_url: z.optional(z.string().check(z.minLength(1))),
  proxy_pac_url: z.optional(z.string().check(z.minLength(1))),
  timeout_seconds: z.optional(z.int().check(z.gte(1), z.lte(600))),
  interval_seconds: z.optional(z.int().check(z.gte(1), z.lte(86400))),
  metrics_file: z.optional(z.string().check(z.minLength(1))),
});
/** The parsed contents of `agent.json`. */
export type FileConfig = z.infer<typeof FileConfigSchema>;

/** Name of the configuration file inside the state directory. */
export const CONFIG_FILE_NAME = "agent.json";

/** Where a resolved value came from. */
export type ConfigSource = "flag" | "env" | "file" | "default";

/** Flags that map onto configuration (global and per-command). */
export interface ConfigFlags {
  stateDir?: string;
  logLevel?: string;
  logFormat?: string;
  url?: string;
  caFile?: string;
  auth?: string;
  metricsFile?: string;
  proxyPac?: string;
}

/** The effective configuration after precedence: flag > environment > agent.json > default. */
export interface ResolvedConfig {
  stateDir: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  platformUrl?: URL;
  caFile?: string;
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
export interface ConfigHost {
  env: (name: string) => string | undefined;
  os: typeof Deno.build.os;
  uid: () => number | null;
  /**
   * Reads `agent.json` through one handle (default: {@linkcode readRegularFile} with the lstat of
   * `ownership`); the audit uses the returned metadata, so what is checked is what is read.
   */
  readConfigFile?: (path: string) => Promise<HandleRead | ReadRefusal>;
  /** Owner and mode checks made before `agent.json` is read (default: the real ones). */
  ownership?: OwnershipHost;
}

/** The real host: Deno's environment, OS and file system. */
export const denoConfigHost: ConfigHost = {
  env: (name) => Deno.env.get(name),
  os: Deno.build.os,
  uid: () => Deno.uid(),
  ownership: denoOwnershipHost,
};

/** Environment variable for each configurable field. */
export const ENV_VARS = {
  stateDir: "ONECONNECT_STATE_DIR",
  platformUrl: "ONECONNECT_PLATFORM_URL",
  enrollmentToken: "ONECONNECT_ENROLLMENT_TOKEN",
  caFile: "ONECONNECT_CA_FILE",
  logLevel: "ONECONNECT_LOG_LEVEL",
  logFormat: "ONECONNECT_LOG_FORMAT",
  auth: "ONECONNECT_AUTH",
  metricsFile: "ONECONNECT_METRICS_FILE",
  proxyPac: "ONECONNECT_PROXY_PAC",
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
  const root = host.uid() === 0;
  if (host.os === "darwin") {
    if (root) return "/Library/Application Support/OneConnect Agent";
    const home = nonEmpty("HOME");
    if (!home) throw noHome();
    return join(home, "Library", "Application Support", "OneConnect Agent");
  }
  if (root) return "/var/lib/oneconnect-agent";
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

const LOOPBACK_HOSTS = new Set(["localhost", "[::1]", "::1"]);

/** Whether `hostname` (as in `URL.hostname`) is a loopback address. */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase()) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Parses a platform URL: https anywhere, http only on loopback (a bearer token must never cross
 * a network in clear text). Query strings and fragments are refused since paths are appended.
 */
export function parsePlatformUrl(raw: string, origin = "--url"): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(
      `Invalid platform URL ${JSON.stringify(raw)} (${origin}): expected https://<host>[:port]`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UsageError(
      `Invalid platform URL ${JSON.stringify(raw)} (${origin}): scheme must be https`,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError(
      `Invalid platform URL (${origin}): remove credentials, query and fragment; expected https://<host>[:port]`,
    );
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new UsageError(
      `Refusing plain http:// to non-loopback host ${
        JSON.stringify(url.hostname)
      } (${origin}): use https://`,
    );
  }
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

/** Parses a proxy URL (credentials allowed; they are never logged). */
export function parseProxyUrl(raw: string, origin: string): URL {
  try {
    const url = new URL(raw);
    if (url.protocol === "http:" || url.protocol === "https:") return url;
  } catch {
    // reported below
  }
  throw new UsageError(`Invalid proxy URL (${origin}): expected http://[user:pass@]host:port`);
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

/** Formats the first zod issue as `"field" is <value>: <problem>`. */
export function describeZodIssue(error: z.core.$ZodError, input: unknown): string {
  const issue = error.issues[0];
  if (!issue) return "invalid value";
  const path = issue.path.map(String).join(".");
  let value: unknown = input;
  for (const key of issue.path) {
    value = value !== null && typeof value === "object"
      ? (value as Record<PropertyKey, unknown>)[key as PropertyKey]
      : undefined;
  }
  if (issue.code === "unrecognized_keys") {
    const keys = (issue as { keys?: string[] }).keys ?? [];
    return `unknown field ${keys.map((k) => JSON.stringify(k)).join(", ")}${
      path ? ` in "${path}"` : ""
    }`;
  }
  const shown = value === undefined ? "missing" : `is ${truncate(JSON.stringify(value))}`;
  return `${path ? `"${path}"` : "value"} ${shown}: ${issue.message}`;
}

function truncate(text: string | undefined, max = 60): string {
  if (text === undefined) return "undefined";
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Largest `agent.json` read; a configuration is a few hundred bytes. */
const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * Reads `agent.json` from the state directory; a missing file is an empty layer. It can point
 * `enroll` at another platform, CA or proxy, so it is audited (POSIX): the state directory and its
 * parents as for secrets, and the file itself, through the handle it is read from (a name swapped
 * after a check is never read): not a symlink, a regular file, owned by us or root, and not
 * writable by group or others. On Windows the state directory's ACL covers it.
 */
export async function readFileConfig(
  stateDir: string,
  host: Pick<ConfigHost, "readConfigFile" | "ownership"> & { os?: typeof Deno.build.os },
): Promise<FileConfig> {
  const path = join(stateDir, CONFIG_FILE_NAME);
  const posix = (host.os ?? Deno.build.os) !== "windows";
  const ownership = host.ownership ?? denoOwnershipHost;
  if (posix) await auditStateDirOwnership(stateDir, ownership);
  const read = host.readConfigFile ??
    ((p: string) => readRegularFile(p, MAX_CONFIG_BYTES, (q) => ownership.lstat(q)));
  let file: HandleRead | ReadRefusal;
  try {
    file = await read(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    if (e instanceof Deno.errors.NotADirectory) return {};
    throw new UsageError(
      `Cannot read configuration ${JSON.stringify(path)}: ${errorMessage(e)}`,
    );
  }
  if (typeof file === "string") {
    throw new UsageError(`Refusing configuration ${JSON.stringify(path)}: ${REFUSALS[file]}`);
  }
  if (posix) auditConfigFile(path, file.info, ownership.uid());
  const text = file.text;
  const parsed = parseJsonDocument(FileConfigSchema, text);
  if (!parsed.ok && parsed.notJson) {
    throw new UsageError(
      `Invalid configuration ${JSON.stringify(path)}: not valid JSON; fix or remove the file`,
    );
  }
  if (!parsed.ok) {
    throw new UsageError(
      `Invalid configuration ${JSON.stringify(path)}: ${
        describeZodIssue(parsed.error, parsed.json)
      }`,
    );
  }
  return parsed.data;
}

const REFUSALS: Record<ReadRefusal, string> = {
  symlink: "it is a symbolic link; replace it with a regular file",
  other: "it is not a file",
  replaced: "it was replaced while being read; check who else writes the state directory",
  "too-large": `it is larger than ${MAX_CONFIG_BYTES} bytes`,
};

/** Resolves the effective configuration: flag > environment > agent.json > default. */
export async function resolveConfig(
  flags: ConfigFlags,
  host: ConfigHost = denoConfigHost,
): Promise<ResolvedConfig> {
  const sources: Record<string, ConfigSource> = {};
  const pick = (
    key: string,
    flag: string | undefined,
    envName: string,
    file: string | number | undefined,
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
    if (file !== undefined) {
      sources[key] = "file";
      return [file, CONFIG_FILE_NAME];
    }
    sources[key] = "default";
    return [undefined, "default"];
  };

  const [rawStateDir] = pick("stateDir", flags.stateDir, ENV_VARS.stateDir, undefined);
  const stateDir = rawStateDir !== undefined ? String(rawStateDir) : defaultStateDir(host);
  if (stateDir.trim() === "") throw new UsageError('Invalid --state-dir "": expected a path');

  const file = await readFileConfig(stateDir, host);

  const [level, levelOrigin] = pick("logLevel", flags.logLevel, ENV_VARS.logLevel, file.log_level);
  const [fmt, fmtOrigin] = pick("logFormat", flags.logFormat, ENV_VARS.logFormat, file.log_format);
  const [url, urlOrigin] = pick("url", flags.url, ENV_VARS.platformUrl, file.platform_url);
  const [caFile] = pick("caFile", flags.caFile, ENV_VARS.caFile, file.ca_file);
  const [auth, authOrigin] = pick("auth", flags.auth, ENV_VARS.auth, file.auth);
  const [metricsFile] = pick(
    "metricsFile",
    flags.metricsFile,
    ENV_VARS.metricsFile,
    file.metrics_file,
  );
  const [pac, pacOrigin] = pick("proxyPac", flags.proxyPac, ENV_VARS.proxyPac, file.proxy_pac_url);

  return {
    stateDir,
    logLevel: level === undefined
      ? "info"
      : oneOf(LOG_LEVELS, String(level), "log level", levelOrigin),
    logFormat: fmt === undefined
      ? "text"
      : oneOf(LOG_FORMATS, String(fmt), "log format", fmtOrigin),
    platformUrl: url === undefined ? undefined : parsePlatformUrl(String(url), urlOrigin),
    caFile: caFile === undefined ? undefined : String(caFile),
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
