import { UsageError } from "../errors.ts";
import { join } from "../file_system.ts";
import {
  CONFIG_FILE_NAME,
  type ConfigFileHost,
  type FileConfig,
  parseConfigText,
  readFileConfig,
} from "./config_file.ts";
import { SYSTEM_STATE_DIR_ENV, systemStateDir } from "../state/system_state_dir.ts";
import { denoOwnershipHost } from "../state/ownership.ts";
import { nearestTrust } from "./config_trust.ts";
import { readSystemConfigText } from "./system_config.ts";
import {
  type RawValue,
  setting,
  type SettingKey,
  SETTINGS,
  type SettingSpec,
  type SettingValues,
  SYSTEM_CONFIG_PATH,
} from "./settings.ts";

/** Where a resolved value came from (`system`: the system configuration file under /etc). */
export type ConfigSource = "flag" | "env" | "file" | "system" | "default";

/** Setting values given as flags (by setting key), as `settingFlagValues` maps them. */
export type ConfigFlags = Partial<Record<SettingKey, RawValue>> & {
  /** Leaves both `agent.json` files out (`diagnostics`, to report on a host whose file is invalid). */
  ignoreFileConfig?: boolean;
};

/**
 * The effective configuration after precedence: flag > environment > agent.json (state dir) >
 * system agent.json > default. The fields are the settings (settings.ts).
 */
export type ResolvedConfig = SettingValues & {
  /** Where each setting's value came from, by setting key (`caFile` for the CA file and pins). */
  sources: Record<string, ConfigSource>;
};

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

type WithEnv = Extract<(typeof SETTINGS)[number], { env: string }>;
/** Environment variable of each setting that has one, and the agent's other variables. */
export const ENV_VARS = {
  ...Object.fromEntries(
    (SETTINGS as readonly SettingSpec[]).flatMap((s) =>
      s.env === undefined ? [] : [[s.key, s.env]]
    ),
  ) as { readonly [R in WithEnv as R["key"]]: R["env"] },
  /** The token itself (not a setting: `enroll --token-file` names a file holding it). */
  enrollmentToken: "ONECONNECT_ENROLLMENT_TOKEN",
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

/** The two `agent.json` layers: the state directory's, then the system one at `systemPath`. */
interface FileLayers {
  state: FileConfig;
  system: FileConfig;
  systemPath?: string;
}

/** The nearest layer giving setting `s`: its raw value (none: undefined), its origin, its source. */
function nearestLayer(
  s: SettingSpec,
  flags: ConfigFlags,
  env: (name: string) => string | undefined,
  files: FileLayers = { state: {}, system: {} },
): [RawValue | undefined, string, ConfigSource] {
  const flag = flags[s.key as SettingKey];
  if (flag !== undefined) return [flag, `--${s.flag!.name}`, "flag"];
  const variable = s.env === undefined ? undefined : env(s.env);
  if (variable !== undefined && variable !== "") return [variable, s.env!, "env"];
  const key = s.file as keyof FileConfig | undefined;
  // Per key, the state directory's file wins over the system one.
  if (key !== undefined && files.state[key] !== undefined) {
    return [files.state[key], CONFIG_FILE_NAME, "file"];
  }
  if (key !== undefined && files.system[key] !== undefined) {
    return [files.system[key], files.systemPath!, "system"];
  }
  return [undefined, "default", "default"];
}

/**
 * Resolves the effective configuration: flag > environment > agent.json (state dir) > system
 * agent.json > default, setting by setting (settings.ts).
 */
export async function resolveConfig(
  flags: ConfigFlags,
  host: ConfigHost = denoConfigHost,
): Promise<ResolvedConfig> {
  const sources: Record<string, ConfigSource> = {};
  const resolve = (s: SettingSpec, files?: FileLayers): unknown => {
    const [raw, origin, source] = nearestLayer(s, flags, host.env, files);
    sources[s.key] = source;
    return raw === undefined ? s.default : s.parse(raw, origin);
  };

  // Where the agent.json files are comes first.
  const stateDir = resolve(setting("stateDir")) as string | undefined ?? defaultStateDir(host);
  const systemPath = resolve(setting("systemConfigFile")) as string | undefined ??
    host.systemConfigPath;
  const state = flags.ignoreFileConfig ? {} : await readFileConfig(stateDir, host);
  const systemText = systemPath === undefined || flags.ignoreFileConfig
    ? undefined
    : await readSystemConfigText(systemPath, host.ownership ?? denoOwnershipHost, host.os);
  const files: FileLayers = {
    state,
    system: systemText === undefined ? {} : parseConfigText(systemPath!, systemText),
    systemPath,
  };

  const values: Record<string, unknown> = {};
  for (const s of SETTINGS as readonly SettingSpec[]) {
    if (!LOCATIONS_AND_TRUST.has(s.key)) values[s.key] = resolve(s, files);
  }
  // The CA file and the pins are one setting: the nearest layer naming either gives it whole.
  const envPins = host.env(ENV_VARS.caPins);
  const [trustSource, trust] = nearestTrust<ConfigSource>([
    ["flag", {
      caFile: flags.caFile as string | undefined,
      caPins: flags.caPins as string[] | undefined,
    }],
    ["env", {
      caFile: host.env(ENV_VARS.caFile) || undefined,
      caPins: envPins === undefined
        ? undefined
        : setting("caPins").parse(envPins, ENV_VARS.caPins) as string[],
    }],
    ["file", { caFile: files.state.ca_file, caPins: files.state.ca_pin }],
    ["system", { caFile: files.system.ca_file, caPins: files.system.ca_pin }],
  ]) ?? ["default", {}];
  sources.caFile = trustSource;

  return { ...values, stateDir, ...trust, systemConfigFile: systemPath, sources } as ResolvedConfig;
}

/** Settings resolved apart: where the files are (before them), and the trust (config_trust.ts). */
const LOCATIONS_AND_TRUST: ReadonlySet<string> = new Set([
  "stateDir",
  "systemConfigFile",
  "caFile",
  "caPins",
]);
