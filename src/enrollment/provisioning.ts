/**
 * Provisioning at install time (`oneconnect-agent provision`): what an installer was given in the
 * environment (platform URL, CA file or pins, enrollment token) is validated and stored for the
 * service: URL and trust merged into the system `agent.json`, the token into
 * `<state-dir>/enrollment.token` (0600). The token is never printed.
 */
import type { CommandContext } from "../config/context.ts";
import { ENV_VARS } from "../config/config.ts";
import { parsePlatformUrl } from "../wire/platform_url.ts";
import { type FileConfig, FileConfigSchema, parseConfigText } from "../config/config_file.ts";
import { readSystemConfigText } from "../config/system_config.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { denoFileSystem, dirname, type FileSystem, lstatOrNull, resolve } from "../file_system.ts";
import { registerSecret } from "../log.ts";
import { ENROLLMENT_TOKEN_FILE_NAME, IdentityStore } from "../state/identity_store.ts";
import { requireSafeParents } from "../state/ownership.ts";
import { FILE_MODE } from "../state/permissions.ts";
import { cloneRefusal } from "../state/clone_guard.ts";
import { parseCaPin } from "../trust/ca_pin.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { readBootstrapCa } from "./enrollment_trust.ts";

/** Mode of the system configuration file and its directory: no secret in them. */
const CONFIG_FILE_MODE = 0o644;
const CONFIG_DIR_MODE = 0o755;
/** Longest token accepted from the environment (as for token files). */
const MAX_TOKEN_BYTES = 64 * 1024;

/** Seams of {@linkcode provision}. */
export interface ProvisionDeps {
  fs: FileSystem;
  /** This host's machine id (for the clone check), null when unknown. */
  machineId: () => Promise<string | null>;
}

const defaultDeps: ProvisionDeps = {
  fs: denoFileSystem,
  machineId: async () => (await new TelemetryCollector().host()).machine_id,
};

/** What {@linkcode provision} read from the environment, validated. */
interface Provisioned {
  platformUrl?: string;
  caFile?: string;
  caPins?: string[];
  token?: string;
}

function nonEmpty(ctx: CommandContext, name: string): string | undefined {
  const value = ctx.env(name)?.trim();
  return value === undefined || value === "" ? undefined : value;
}

/** Reads and validates the provisioning variables; a bad value is a UsageError naming it. */
async function readProvisioned(ctx: CommandContext, fs: FileSystem): Promise<Provisioned> {
  const out: Provisioned = {};
  const url = nonEmpty(ctx, ENV_VARS.platformUrl);
  if (url !== undefined) out.platformUrl = parsePlatformUrl(url, ENV_VARS.platformUrl).href;
  const caFile = nonEmpty(ctx, ENV_VARS.caFile);
  const pins = nonEmpty(ctx, ENV_VARS.caPins)?.split(",").filter((p) => p.trim() !== "");
  if (caFile !== undefined && pins !== undefined) {
    throw new UsageError(
      `Cannot provision: set ${ENV_VARS.caFile} or ${ENV_VARS.caPins}, not both`,
    );
  }
  if (caFile !== undefined) {
    // Stored as an absolute path: the service does not start in the installer's directory.
    out.caFile = resolve(caFile);
    try {
      await readBootstrapCa(fs, out.caFile);
    } catch (e) {
      throw new UsageError(`${errorMessage(e)} (${ENV_VARS.caFile})`, { cause: e });
    }
  }
  if (pins !== undefined) {
    out.caPins = [...new Set(pins.map((p) => parseCaPin(p, ENV_VARS.caPins)))];
  }
  const token = ctx.env(ENV_VARS.enrollmentToken);
  if (token !== undefined && token.trim() !== "") {
    registerSecret(token);
    out.token = token.trim();
    if (new TextEncoder().encode(out.token).length > MAX_TOKEN_BYTES) {
      throw new UsageError(
        `Invalid ${ENV_VARS.enrollmentToken}: larger than ${MAX_TOKEN_BYTES} bytes, not a token`,
      );
    }
  }
  return out;
}

/** Merges `p` into the configuration file at `path` (other keys and edits kept); one rename. */
async function storeConfig(
  path: string,
  p: Provisioned,
  ctx: CommandContext,
  fs: FileSystem,
): Promise<string[]> {
  const windows = Deno.build.os === "windows";
  const ownership = {
    uid: () => (windows ? null : Deno.uid()),
    lstat: (q: string) => fs.lstat(q),
    realPath: (q: string) => Deno.realPath(q),
  };
  await requireSafeParents(path, ownership);
  const text = await readSystemConfigText(path, ownership, Deno.build.os);
  const current = text === undefined ? {} : parseConfigText(path, text);
  const next: FileConfig = { ...current };
  const lines: string[] = [];
  const where = JSON.stringify(path);
  if (p.platformUrl !== undefined) {
    next.platform_url = p.platformUrl;
    lines.push(`platform URL ${JSON.stringify(p.platformUrl)} stored in ${where}`);
  }
  // Trust is one setting: a CA file replaces pins and the other way round.
  if (p.caFile !== undefined) {
    next.ca_file = p.caFile;
    delete next.ca_pin;
    lines.push(`CA file ${JSON.stringify(p.caFile)} stored in ${where}`);
  }
  if (p.caPins !== undefined) {
    next.ca_pin = p.caPins;
    delete next.ca_file;
    lines.push(`${p.caPins.length} CA pin(s) stored in ${where}`);
  }
  if (lines.length === 0) return lines;
  const checked = FileConfigSchema.parse(next);
  const dir = dirname(path);
  if ((await lstatOrNull(fs, dir)) === null) {
    try {
      await fs.mkdir(dir, CONFIG_DIR_MODE);
    } catch (e) {
      throw new UsageError(`Cannot create ${JSON.stringify(dir)}: ${errorMessage(e)}`);
    }
  }
  try {
    await fs.writeFileAtomic(path, `${JSON.stringify(checked, null, 2)}\n`, CONFIG_FILE_MODE);
  } catch (e) {
    throw new UsageError(`Cannot write configuration ${where}: ${errorMessage(e)}`);
  }
  ctx.logger.debug("Provisioned configuration", { path });
  return lines;
}

/**
 * Stores the token for the service unless this host is already enrolled (then it would only lie
 * there, spent or not); an identity copied from another host (a clone) does not count.
 */
async function storeToken(
  store: IdentityStore,
  token: string,
  deps: ProvisionDeps,
): Promise<string> {
  const path = store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME);
  if (await store.exists()) {
    const identity = await store.load();
    if (cloneRefusal(identity.machine_id, await deps.machineId(), "") === null) {
      return `enrollment token not stored: already enrolled as ${
        JSON.stringify(identity.agent_id)
      } (re-enroll with "oneconnect-agent enroll --force")`;
    }
  }
  await store.ensureStateDir();
  try {
    // A new temp file (createNew, 0600) renamed over the path: never written through a link.
    await deps.fs.writeFileAtomic(path, `${token}\n`, FILE_MODE);
  } catch (e) {
    throw new UsageError(
      `Cannot write enrollment token ${JSON.stringify(path)}: ${errorMessage(e)}`,
    );
  }
  return `enrollment token stored in ${JSON.stringify(path)} (mode 0600)`;
}

/**
 * `provision`: validates the provisioning variables, then stores them (configuration into
 * `configPath`, the token into the state directory). Returns one line per thing stored, or
 * `nothing to provision`.
 */
export async function provision(
  ctx: CommandContext,
  configPath: string,
  overrides: Partial<ProvisionDeps> = {},
): Promise<string[]> {
  const deps: ProvisionDeps = { ...defaultDeps, ...overrides };
  // Everything is validated before anything is written.
  const p = await readProvisioned(ctx, deps.fs);
  const lines = await storeConfig(configPath, p, ctx, deps.fs);
  if (p.token !== undefined) {
    const store = new IdentityStore(ctx.config.stateDir, { fs: deps.fs, logger: ctx.logger });
    lines.push(await storeToken(store, p.token, deps));
  }
  return lines.length === 0 ? ["nothing to provision"] : lines;
}
