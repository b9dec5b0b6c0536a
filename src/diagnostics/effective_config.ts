/**
 * The `config.json` entry: every setting, its effective value and where it came from (flag,
 * environment, agent.json, the system agent.json, default). URL values lose user info, query and fragment; agent.json's
 * unknown keys appear by name only.
 *
 * @module
 */
import type { ConfigSource, ResolvedConfig } from "../config/config.ts";
import { CONFIG_FILE_NAME, FileConfigSchema } from "../config/config_file.ts";
import { SETTINGS, type SettingSpec } from "../config/settings.ts";
import { errorMessage } from "../errors.ts";
import { type FileSystem, join } from "../file_system.ts";
import type { DiagnosticEntry, Unreadable } from "./manifest.ts";
import { safeUrl } from "./sanitize.ts";

function describeSource(
  source: ConfigSource | undefined,
  s: SettingSpec,
  systemFile: string | undefined,
): string {
  switch (source) {
    case "flag":
      return s.flag === undefined ? "flag" : `flag --${s.flag.name}`;
    case "env":
      return `environment ${s.env ?? ""}`.trimEnd();
    case "file":
      return `${CONFIG_FILE_NAME} ${s.file ?? ""}`.trimEnd();
    case "system":
      return `${systemFile ?? "system configuration file"} ${s.file ?? ""}`.trimEnd();
    default:
      return "default";
  }
}

function shown(value: unknown, url: boolean | undefined): unknown {
  if (value === undefined) return null;
  if (value instanceof URL) return safeUrl(value);
  // A PAC location is a URL or a path: only a URL can carry credentials.
  if (url && typeof value === "string" && value.includes("://")) return safeUrl(value);
  return value;
}

/** The keys of agent.json (names only) and which of them the agent does not know. */
async function agentJsonKeys(
  stateDir: string,
  fs: Pick<FileSystem, "lstat" | "readTextFile">,
): Promise<{ present: boolean; keys: string[]; unknown: string[] } | { unreadable: string }> {
  const path = join(stateDir, CONFIG_FILE_NAME);
  try {
    const info = await fs.lstat(path);
    if (!info.isFile) return { unreadable: `${path} is not a regular file; not read` };
    const json: unknown = JSON.parse(await fs.readTextFile(path));
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      return { unreadable: `${path} is not a JSON object` };
    }
    const known = new Set(Object.keys(FileConfigSchema.shape));
    const keys = Object.keys(json);
    return { present: true, keys, unknown: keys.filter((k) => !known.has(k)) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { present: false, keys: [], unknown: [] };
    if (e instanceof SyntaxError) return { unreadable: `${path} is not valid JSON` };
    return { unreadable: `cannot read ${path}: ${errorMessage(e)}` };
  }
}

/**
 * The `config.json` entry for `config`; `problem` (already made safe) says why agent.json was
 * left out of it, when it was.
 */
export async function configEntry(
  config: ResolvedConfig,
  problem: string | undefined,
  fs: Pick<FileSystem, "lstat" | "readTextFile">,
): Promise<{ entry: DiagnosticEntry; unreadable: Unreadable[] }> {
  const unreadable: Unreadable[] = [];
  const settings: Record<string, { value: unknown; source: string }> = {};
  for (const s of SETTINGS as readonly SettingSpec[]) {
    if (s.hiddenInDiagnostics) continue;
    const source = config.sources[s.key];
    settings[s.key] = {
      value: shown((config as Record<string, unknown>)[s.key], s.url),
      source: describeSource(source, s, config.systemConfigFile),
    };
  }
  const file = await agentJsonKeys(config.stateDir, fs);
  if ("unreadable" in file) unreadable.push({ what: CONFIG_FILE_NAME, reason: file.unreadable });
  else if (problem !== undefined) unreadable.push({ what: CONFIG_FILE_NAME, reason: problem });
  return {
    entry: {
      name: "config.json",
      source:
        `the configuration resolved as every command resolves it (flags, environment, ${CONFIG_FILE_NAME}, defaults)`,
      noSecret:
        "URL values without user info, query or fragment; agent.json keys the agent does not know by name only, never their values",
      content: {
        settings,
        ...(problem === undefined ? {} : {
          [`${CONFIG_FILE_NAME}_ignored`]: problem,
        }),
        agent_json: "unreadable" in file
          ? { readable: false }
          : { present: file.present, keys: file.keys, unknown_keys: file.unknown },
      },
    },
    unreadable,
  };
}
