/** `status.json`: its schema, reading it, and the store that writes it atomically. */
import * as z from "../zod.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { denoFileSystem, type FileSystem, join } from "../file_system.ts";
import { parseJsonDocument } from "../json_document.ts";
import { PermissionRepairSchema } from "./permissions.ts";
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";

/** Name of the heartbeat status file in the state directory. */
export const STATUS_FILE_NAME = "status.json";
/** Mode of `status.json`: it names the agent and its platform, so it stays owner-only. */
const STATUS_FILE_MODE = 0o600;

const timestamp = z.iso.datetime({ offset: true });

/** The last failed attempt, as shown by `status`. */
const StatusErrorSchema = z.object({
  kind: z.string(),
  http_status: z.nullable(z.int()),
  code: z.nullable(z.string()),
  message: z.string(),
});
/** The last failed attempt. */
export type StatusError = z.infer<typeof StatusErrorSchema>;

/** Why the heartbeat loop stopped (a rejection, a cloned identity, or a shutdown signal). */
const StoppedSchema = z.object({
  at: timestamp,
  reason: z.string(),
  message: z.string(),
});
/** Why the loop stopped. */
export type Stopped = z.infer<typeof StoppedSchema>;

/** Certificate renewal state (filled by the renewal logic). */
const RenewalStatusSchema = z.object({
  next_at: z.nullable(timestamp),
  last_error: z.nullable(z.string()),
  last_renewed_at: z.nullable(timestamp),
});
/** Renewal state. */
export type RenewalStatus = z.infer<typeof RenewalStatusSchema>;

/** The platform's clock against this host's, from the `Date` header of its last answer. */
const ClockOffsetSchema = z.object({
  /** Positive: the platform's clock is ahead of this host's. */
  seconds: z.int(),
  measured_at: timestamp,
});

/**
 * `status.json`. Loose, so that fields written by a newer agent or another module survive a
 * rewrite by this one.
 */
export const StatusSchema = z.looseObject({
  version: z.literal(1),
  /** The identity these counters belong to; a status of another identity is discarded. */
  agent_id: z.nullable(z.string()),
  last_attempt_at: z.nullable(timestamp),
  last_success_at: z.nullable(timestamp),
  consecutive_failures: z.int().check(z.nonnegative()),
  failing_since: z.nullable(timestamp),
  last_error: z.nullable(StatusErrorSchema),
  /** The last sequence number used in a heartbeat. */
  sequence: z.int().check(z.nonnegative()),
  /** The highest sequence number that may have been sent (persisted before sending). */
  sequence_reserved: z.int().check(z.nonnegative()),
  next_attempt_at: z.nullable(timestamp),
  certificate_expires_at: z.nullable(timestamp),
  permission_repairs: z.array(PermissionRepairSchema),
  stopped: z.nullable(StoppedSchema),
  renewal: z.optional(z.nullable(RenewalStatusSchema)),
  /** Heartbeats the platform accepted, over the life of this identity (Prometheus counter). */
  heartbeats_sent_total: z.optional(z.int().check(z.nonnegative())),
  /** Heartbeat attempts that failed, over the life of this identity (Prometheus counter). */
  heartbeats_failed_total: z.optional(z.int().check(z.nonnegative())),
  /** The heartbeat interval in force when `run` last scheduled an attempt. */
  interval_seconds: z.optional(z.number().check(z.positive())),
  /**
   * The `features` of the platform's last enrollment or heartbeat answer (contract v1.3); absent
   * in status files of older agents, which means none.
   */
  platform_features: z.optional(z.array(z.string())),
  clock_offset: z.optional(z.nullable(ClockOffsetSchema)),
});
/** The agent's heartbeat status. */
export type AgentStatus = z.infer<typeof StatusSchema>;

/** A status with nothing happened yet. */
export function emptyStatus(agentId: string | null = null): AgentStatus {
  return {
    version: 1,
    agent_id: agentId,
    last_attempt_at: null,
    last_success_at: null,
    consecutive_failures: 0,
    failing_since: null,
    last_error: null,
    sequence: 0,
    sequence_reserved: 0,
    next_attempt_at: null,
    certificate_expires_at: null,
    permission_repairs: [],
    stopped: null,
  };
}

/** Path of `status.json` in `stateDir`. */
export function statusPath(stateDir: string): string {
  return join(stateDir, STATUS_FILE_NAME);
}

/** Options for {@linkcode readStatus} and {@linkcode StatusStore}. */
export interface StatusStoreOptions {
  fs?: FileSystem;
  logger?: Logger;
}

/**
 * Reads `status.json`. Absent → `null`. A symlink or non-file → {@linkcode UsageError} naming the
 * file (never followed). Unparsable or wrongly shaped content → `null` with a warning: the file
 * holds no secret and nothing that cannot be rebuilt (the platform answers a sequence that went
 * backwards with the last one it saw).
 */
export async function readStatus(
  path: string,
  options: StatusStoreOptions = {},
): Promise<AgentStatus | null> {
  const fs = options.fs ?? denoFileSystem;
  const logger = options.logger ?? silentLogger;
  let info: Deno.FileInfo;
  try {
    info = await fs.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new UsageError(
      `Cannot read status file ${JSON.stringify(path)}: ${errorMessage(e)}`,
    );
  }
  if (info.isSymlink || !info.isFile) {
    throw new UsageError(
      `Invalid status file ${JSON.stringify(path)}: ${
        info.isSymlink ? "is a symlink" : "is not a regular file"
      }; remove it`,
    );
  }
  let text: string;
  try {
    text = await fs.readTextFile(path);
  } catch (e) {
    throw new UsageError(
      `Cannot read status file ${JSON.stringify(path)}: ${errorMessage(e)}`,
    );
  }
  const parsed = parseJsonDocument(StatusSchema, text);
  if (!parsed.ok && parsed.notJson) {
    logger.warn("Ignoring corrupt status file (not JSON); it will be rewritten", { path });
    return null;
  }
  if (!parsed.ok) {
    logger.warn("Ignoring invalid status file; it will be rewritten", {
      path,
      problem: parsed.error.issues[0]?.message,
    });
    return null;
  }
  return parsed.data;
}

/**
 * The status of one running agent: an in-memory copy that its writers mutate, and atomic,
 * serialised saves (so two writers in one process never race their renames).
 */
export class StatusStore {
  /** The file this store writes. */
  readonly path: string;
  /** The current status; mutate it, then {@linkcode save}. */
  current: AgentStatus;
  #fs: FileSystem;
  #pending: Promise<void> = Promise.resolve();

  constructor(path: string, current: AgentStatus, options: StatusStoreOptions = {}) {
    this.path = path;
    this.current = current;
    this.#fs = options.fs ?? denoFileSystem;
  }

  /** Opens the status of `agentId` in `stateDir`; another identity's status starts afresh. */
  static async open(
    stateDir: string,
    agentId: string,
    options: StatusStoreOptions = {},
  ): Promise<StatusStore> {
    const path = statusPath(stateDir);
    const existing = await readStatus(path, options);
    let current = existing;
    if (current !== null && current.agent_id !== agentId) {
      (options.logger ?? silentLogger).info(
        "Status file belongs to another identity; starting afresh",
        {
          previous_agent_id: current.agent_id,
        },
      );
      current = null;
    }
    return new StatusStore(path, current ?? emptyStatus(agentId), options);
  }

  /** Writes the current status atomically (0600); saves issued together land in order. */
  save(): Promise<void> {
    const run = async () => {
      await this.#fs.writeFileAtomic(
        this.path,
        JSON.stringify(this.current, null, 2) + "\n",
        STATUS_FILE_MODE,
      );
    };
    const next = this.#pending.then(run, run);
    this.#pending = next.catch(() => {});
    return next;
  }
}

/** Identity facts `status` shows next to the heartbeat status (no secrets). */
export interface StatusIdentityFacts {
  agent_id: string;
  platform_url: string;
  enrolled_at: string;
  certificate_not_after: string;
}
