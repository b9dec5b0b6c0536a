/**
 * The support bundle: runs every collector (each reads only what it names, see manifest.json),
 * lists what could not be read, and packs the entries into one archive under a folder named
 * like the file. Never writes to the state directory and takes no lock: it can run next to a
 * running `run`.
 *
 * @module
 */
import type { ConfigFlags } from "../config/config.ts";
import type { CommandContext } from "../config/context.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { denoFileSystem, type FileSystem } from "../file_system.ts";
import { isoTime } from "../iso_time.ts";
import { createLogger } from "../log.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import { denoOwnershipHost, type OwnershipHost } from "../state/ownership.ts";
import { type AgentStatus, readStatus, statusPath } from "../state/status_store.ts";
import type { TelemetryCollector } from "../telemetry/collector.ts";
import { type CommandRunner, denoCommandRunner } from "../state/windows_acl.ts";
import { agentLogsEntry, type AgentLogsHost } from "./agent_logs.ts";
import type { ArchiveFormat } from "./archive_entry.ts";
import { configEntry } from "./effective_config.ts";
import { environmentEntry } from "./environment.ts";
import { identityEntry } from "./identity_metadata.ts";
import { type DiagnosticEntry, entryText, manifestEntry, type Unreadable } from "./manifest.ts";
import { permissionAuditEntry } from "./permission_audit.ts";
import { preflightEntry, type PreflightEntryOptions } from "./preflight_entry.ts";
import { safeMessage, withheldConfigValues } from "./sanitize.ts";
import { statusEntries } from "./status_entries.ts";
import { telemetryEntry } from "./telemetry_entry.ts";
import { tarGzip } from "./tar_gzip.ts";
import { denoVersionsHost, versionsEntry, type VersionsHost } from "./versions.ts";
import { zipArchive } from "./zip.ts";

/** What {@linkcode collectBundle} works with; every field but `ctx` defaults to the real host. */
export interface BundleOptions {
  /** Resolved configuration, environment and a logger for the modules the collectors call. */
  ctx: CommandContext;
  /** Why agent.json was left out of the configuration (already made safe), if it was. */
  configProblem?: string;
  /** Run the preflight (`--no-network` turns it off). */
  network: boolean;
  /** Lines the modules logged while collecting (already redacted by the logger). */
  logLines?: () => readonly string[];
  os?: typeof Deno.build.os;
  fs?: FileSystem;
  ownership?: OwnershipHost;
  runCommand?: CommandRunner;
  versions?: Omit<VersionsHost, "env">;
  logs?: Partial<AgentLogsHost>;
  preflight?: PreflightEntryOptions;
  collector?: TelemetryCollector;
  now?: () => number;
}

/** The collected bundle, before it is archived. */
export interface Bundle {
  agentId: string | null;
  createdMs: number;
  entries: DiagnosticEntry[];
  unreadable: Unreadable[];
}

/** Runs every collector; never throws for what it cannot read (that goes to `unreadable`). */
export async function collectBundle(options: BundleOptions): Promise<Bundle> {
  const { ctx } = options;
  const now = options.now ?? Date.now;
  const createdMs = now();
  const started = performance.now();
  const os = options.os ?? Deno.build.os;
  const fs = options.fs ?? denoFileSystem;
  const ownership = options.ownership ?? denoOwnershipHost;
  const runCommand = options.runCommand ?? denoCommandRunner;
  const stateDir = ctx.config.stateDir;
  const unreadable: Unreadable[] = [];
  const cannot = (what: string, e: unknown) =>
    unreadable.push({ what, reason: safeMessage(errorMessage(e)) });

  // The identity through its store (which also registers its secrets for redaction); only named
  // fields leave it (identity_metadata.ts).
  let identity: Identity | null = null;
  let notEnrolled = false;
  const store = new IdentityStore(stateDir, { fs, logger: ctx.logger, os, runCommand, ownership });
  try {
    if (await store.exists()) identity = await store.load();
    else notEnrolled = true;
  } catch (e) {
    cannot("identity", e);
  }
  let status: AgentStatus | null = null;
  try {
    status = await readStatus(statusPath(stateDir), { fs, logger: ctx.logger });
  } catch (e) {
    cannot("status.json", e);
  }

  const versions = versionsEntry({ env: ctx.env, ...(options.versions ?? denoVersionsHost) });
  unreadable.push(...versions.unreadable);
  const sources = ctx.config.sources;
  const [config, permissions, logs, preflight, telemetry] = await Promise.all([
    configEntry(ctx.config, options.configProblem, fs),
    permissionAuditEntry(stateDir, { fs, ownership, os, runCommand }),
    agentLogsEntry({ os, env: ctx.env, ...options.logs }),
    preflightEntry(
      ctx,
      identity,
      options.network ? undefined : "--no-network",
      options.preflight,
    ),
    telemetryEntry(ctx.logger, options.collector).catch((e) => {
      cannot("telemetry", e);
      return null;
    }),
  ]);
  const entries: DiagnosticEntry[] = [versions.entry, config.entry];
  unreadable.push(...config.unreadable, ...permissions.unreadable, ...logs.unreadable);
  unreadable.push(...preflight.unreadable);
  if (identity !== null) {
    entries.push(
      await identityEntry(identity, {
        mode: ctx.config.auth,
        source: sources.auth === undefined ? "default" : sources.auth,
      }, status),
    );
  } else {
    entries.push({
      name: "identity.json",
      source: "identity.json in the state directory",
      noSecret: "states only whether the agent is enrolled",
      content: { enrolled: notEnrolled ? false : "unknown (the identity could not be read)" },
    });
  }
  entries.push(...statusEntries(status, identity, createdMs));
  entries.push(preflight.entry, permissions.entry);
  if (telemetry !== null) entries.push(telemetry);
  entries.push(...logs.entries, environmentEntry(ctx.env));
  const own = options.logLines?.() ?? [];
  if (own.length > 0) {
    entries.push({
      name: "diagnostics_log.txt",
      source: "what the agent's modules logged while this bundle was collected",
      noSecret: "the agent's logger redacts every line; redacted again here",
      content: `${own.map(safeMessage).join("\n")}\n`,
    });
  }
  entries.push(
    manifestEntry(entries, unreadable, {
      createdMs,
      network: options.network,
      durationMs: performance.now() - started,
    }),
  );
  return {
    agentId: identity?.agent_id ?? status?.agent_id ?? null,
    createdMs,
    entries,
    unreadable,
  };
}

/** The archive format of this OS: `.zip` on Windows, `.tar.gz` elsewhere. */
export function archiveFormat(os: typeof Deno.build.os = Deno.build.os): ArchiveFormat {
  return os === "windows" ? "zip" : "tar.gz";
}

/** `oneconnect-diagnostics-<agent id>-<UTC time>`, the default file name without extension. */
export function bundleBaseName(agentId: string | null, createdMs: number): string {
  const stamp = isoTime(createdMs).replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z");
  return `oneconnect-diagnostics-${agentId ?? "not-enrolled"}-${stamp}`;
}

/** The bundle as an archive, every entry under the folder `folder`. */
export function archiveBundle(
  bundle: Bundle,
  format: ArchiveFormat,
  folder: string,
): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const files = bundle.entries.map((e) => ({
    name: `${folder}/${e.name}`,
    data: encoder.encode(entryText(e)),
  }));
  return format === "zip" ? zipArchive(files, bundle.createdMs) : tarGzip(files, bundle.createdMs);
}

/** The archive `diagnostics` writes, with what the command reports beside it. */
export interface SupportArchive {
  /** The context the bundle was collected with (without agent.json when that was broken). */
  ctx: CommandContext;
  bytes: Uint8Array;
  /** The default file name: {@linkcode bundleBaseName} and this OS's archive extension. */
  fileName: string;
  /** What could not be read (manifest.json lists the same). */
  unreadable: Unreadable[];
}

/**
 * Collects the support bundle and archives it in this OS's format. A configuration that cannot
 * be resolved is reported in the bundle, which is then made without agent.json: a bundle is most
 * wanted when the configuration is broken. The modules' log lines go into the bundle.
 */
export async function buildSupportArchive(
  context: (extra?: ConfigFlags) => Promise<CommandContext>,
  network: boolean,
): Promise<SupportArchive> {
  let ctx: CommandContext;
  let configProblem: string | undefined;
  try {
    ctx = await context();
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    ctx = await context({ ignoreFileConfig: true });
    configProblem = withheldConfigValues(safeMessage(e.message));
  }
  const lines: string[] = [];
  const inner = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const bundle = await collectBundle({
    ctx: { ...ctx, logger: inner },
    configProblem,
    network,
    logLines: () => lines,
  });
  const format = archiveFormat();
  const base = bundleBaseName(bundle.agentId, bundle.createdMs);
  const bytes = await archiveBundle(bundle, format, base);
  return { ctx, bytes, fileName: `${base}.${format}`, unreadable: bundle.unreadable };
}
