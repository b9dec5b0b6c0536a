/**
 * What `status` reports: the identity, the heartbeat status of the agent that holds it, and
 * whether a `run` process holds it now; the JSON view and the `--health` verdict.
 */
import { AgentError, ExitCode, NotEnrolledError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import { lockHolder, type LockRecord } from "../state/state_lock.ts";
import {
  type AgentStatus,
  emptyStatus,
  readStatus,
  type StatusIdentityFacts,
  statusPath,
} from "../state/status_store.ts";
import { VERSION } from "../version.ts";

/** Whether a `run` process holds the identity now (from `identity.lock` and its OS lock). */
export interface AgentProcess {
  running: boolean;
  /** The holder's pid, when a process holds the lock and its record could be read. */
  pid: number | null;
  /** The holder's command (`run`, `run --once`, `renew`...). */
  command: string | null;
}

/** The process facts from the lock's holder (`null`: nobody holds it). */
function agentProcess(holder: { record: LockRecord | null } | null): AgentProcess {
  const record = holder?.record ?? null;
  return {
    // A holder whose record is unreadable is most likely the service itself.
    running: holder !== null && (record === null || record.command.startsWith("run")),
    pid: record?.pid ?? null,
    command: record?.command ?? null,
  };
}

/** How `status --health` sums the agent up, and its exit code. */
function agentHealth(
  process: AgentProcess,
  status: AgentStatus | null,
): { health: "ok" | "failing" | "not_running"; exitCode: ExitCode } {
  if (!process.running) return { health: "not_running", exitCode: ExitCode.notRunning };
  if (status !== null && (status.consecutive_failures > 0 || status.stopped !== null)) {
    return { health: "failing", exitCode: ExitCode.failing };
  }
  return { health: "ok", exitCode: ExitCode.ok };
}

/**
 * What `status --json` prints: identity facts, the heartbeat status and the process, flat.
 * `schema_version` is the document's version (1); `agent_version` the agent's.
 */
export function statusView(
  identity: StatusIdentityFacts,
  status: AgentStatus | null,
  process: AgentProcess = { running: false, pid: null, command: null },
): Record<string, unknown> {
  const s = status !== null && status.agent_id === identity.agent_id
    ? status
    : emptyStatus(identity.agent_id);
  const { version, ...rest } = s;
  return {
    schema_version: version,
    agent_version: VERSION,
    ...rest,
    running: process.running,
    pid: process.pid,
    health: agentHealth(process, s).health,
    enrolled: true,
    agent_id: identity.agent_id,
    platform_url: identity.platform_url,
    enrolled_at: identity.enrolled_at,
    certificate_expires_at: identity.certificate_not_after,
  };
}

/** What {@linkcode readStatusReport} found: no identity, or the identity and its status. */
export type StatusReport =
  | { enrolled: false; stateDir: string; error: NotEnrolledError }
  | {
    enrolled: true;
    stateDir: string;
    identity: Identity;
    /** `status.json` as written (possibly another agent's: see {@linkcode statusView}). */
    status: AgentStatus | null;
    process: AgentProcess;
  };

/** Reads the identity, its heartbeat status and the lock's holder from `stateDir`. */
export async function readStatusReport(stateDir: string, logger: Logger): Promise<StatusReport> {
  const store = new IdentityStore(stateDir, { logger });
  if (!(await store.exists())) {
    const error = new NotEnrolledError(
      `Not enrolled: no identity in ${
        JSON.stringify(stateDir)
      }; run "oneconnect-agent enroll --url <platform-url>"`,
    );
    return { enrolled: false, stateDir, error };
  }
  const identity = await store.load();
  const status = await readStatus(statusPath(stateDir), { logger });
  const process = agentProcess(await lockHolder(stateDir));
  return { enrolled: true, stateDir, identity, status, process };
}

/** What `status --json` prints when there is no identity. */
export function notEnrolledView(stateDir: string): Record<string, unknown> {
  return {
    schema_version: 1,
    agent_version: VERSION,
    enrolled: false,
    state_dir: stateDir,
    running: false,
  };
}

/**
 * The `--health` verdict on an enrolled report: `null` when healthy, else the error to exit with
 * (8 when the running agent's heartbeats fail, 9 when no agent runs).
 */
export function healthProblem(
  report: Extract<StatusReport, { enrolled: true }>,
): AgentError | null {
  const { identity, status, process, stateDir } = report;
  const own = status !== null && status.agent_id === identity.agent_id ? status : null;
  const { health, exitCode } = agentHealth(process, own);
  if (health === "not_running") {
    return new AgentError(
      `Agent ${JSON.stringify(identity.agent_id)} is not running (no process holds ${
        JSON.stringify(stateDir)
      }); start the service (systemctl start oneconnect-agent)`,
      exitCode,
    );
  }
  if (health === "failing") {
    return new AgentError(
      `Agent ${JSON.stringify(identity.agent_id)} is running but its heartbeats are failing (${
        own?.consecutive_failures ?? 0
      } consecutive${own?.last_error ? `: ${own.last_error.message}` : ""})`,
      exitCode,
    );
  }
  return null;
}
