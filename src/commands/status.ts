/** `oneconnect-agent status`: the identity and the heartbeat status, as text, JSON or Prometheus. */
import type { CommandContext } from "../config/context.ts";
import { CERTIFICATE_WARNING_DAYS, certificateExpiry } from "../enrollment/renewal.ts";
import { AgentError, ExitCode, NotEnrolledError } from "../errors.ts";
import { describeOffset } from "../wire/clock_offset.ts";
import { IdentityStore } from "../state/identity_store.ts";
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
export function agentProcess(holder: { record: LockRecord | null } | null): AgentProcess {
  const record = holder?.record ?? null;
  return {
    // A holder whose record is unreadable is most likely the service itself.
    running: holder !== null && (record === null || record.command.startsWith("run")),
    pid: record?.pid ?? null,
    command: record?.command ?? null,
  };
}

/** How `status --health` sums the agent up, and its exit code. */
export function agentHealth(
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

function relative(iso: string | null, nowMs: number): string {
  if (iso === null) return "never";
  const deltaSeconds = Math.round((Date.parse(iso) - nowMs) / 1000);
  const abs = Math.abs(deltaSeconds);
  const span = abs < 120
    ? `${abs} s`
    : abs < 7200
    ? `${Math.round(abs / 60)} min`
    : abs < 172800
    ? `${Math.round(abs / 3600)} h`
    : `${Math.round(abs / 86400)} days`;
  if (abs === 0) return `${iso} (now)`;
  return `${iso} (${deltaSeconds > 0 ? `in ${span}` : `${span} ago`})`;
}

/** Renders `status` for humans, one fact per line. */
export function renderStatusText(
  identity: StatusIdentityFacts,
  status: AgentStatus | null,
  nowMs: number,
  process?: AgentProcess,
): string {
  const s = status !== null && status.agent_id === identity.agent_id ? status : null;
  const lines: Array<[string, string]> = [
    ["Agent", identity.agent_id],
    ...(process === undefined ? [] : [[
      "Process",
      process.running
        ? `running${process.pid === null ? "" : ` (pid ${process.pid})`}`
        : process.pid !== null
        ? `not running (${process.command} pid ${process.pid} holds the identity)`
        : "not running",
    ] as [string, string]]),
    ["Platform", identity.platform_url],
    ["Enrolled", identity.enrolled_at],
  ];
  const expiry = certificateExpiry(identity.certificate_not_after, nowMs).kind;
  lines.push([
    "Certificate",
    `expires ${relative(identity.certificate_not_after, nowMs)}${
      expiry === "expired"
        ? " EXPIRED"
        : expiry === "soon"
        ? ` (expires within ${CERTIFICATE_WARNING_DAYS} days)`
        : ""
    }`,
  ]);
  if (s === null) {
    lines.push(["Heartbeats", "none yet (run `oneconnect-agent run`)"]);
  } else {
    lines.push(["Last success", relative(s.last_success_at, nowMs)]);
    lines.push(["Last attempt", relative(s.last_attempt_at, nowMs)]);
    lines.push([
      "Failures",
      s.consecutive_failures === 0
        ? "0"
        : `${s.consecutive_failures} consecutive, failing since ${s.failing_since ?? "unknown"}`,
    ]);
    if (s.last_error !== null) {
      const e = s.last_error;
      const head = [e.kind, e.http_status, e.code].filter((v) => v !== null).join(" ");
      lines.push(["Last error", `${head}: ${e.message}`]);
    }
    lines.push(["Sequence", String(s.sequence)]);
    lines.push([
      "Next attempt",
      s.stopped !== null || s.next_attempt_at === null
        ? "none scheduled"
        : process !== undefined && !process.running
        ? "none (the agent is not running)"
        : relative(s.next_attempt_at, nowMs),
    ]);
    if (s.stopped !== null) {
      lines.push(["Stopped", `${s.stopped.at} (${s.stopped.reason}): ${s.stopped.message}`]);
    }
    for (const r of s.permission_repairs) {
      lines.push(["Permissions", `repaired ${r.path}: ${r.old_mode} -> ${r.new_mode}`]);
    }
    if (s.clock_offset) {
      const c = s.clock_offset;
      lines.push([
        "Clock offset",
        `${c.seconds} s: the platform's clock ${
          describeOffset(c.seconds)
        } (measured ${c.measured_at})`,
      ]);
    }
    if (s.renewal) {
      const r = s.renewal;
      lines.push(["Renewal", `next ${r.next_at ?? "not scheduled"}`]);
      if (r.last_renewed_at !== null) lines.push(["Last renewal", r.last_renewed_at]);
      if (r.last_error !== null) lines.push(["Renewal error", r.last_error]);
    }
  }
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  return lines.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join("\n") + "\n";
}

/** Output formats of `status`. */
export const STATUS_FORMATS = ["text", "json", "prometheus"] as const;
/** An output format of `status`. */
export type StatusFormat = typeof STATUS_FORMATS[number];

/**
 * `oneconnect-agent status [--format text|json|prometheus] [--health]`: exit 5 when not enrolled
 * (after printing `enrolled: false` as JSON, or `oneconnect_agent_enrolled 0`); with `health`, exit
 * 8 when the running agent's heartbeats fail and 9 when no agent runs.
 */
export async function statusCommand(
  ctx: CommandContext,
  options: { format: StatusFormat; health?: boolean },
): Promise<void> {
  const store = new IdentityStore(ctx.config.stateDir, { logger: ctx.logger });
  if (!(await store.exists())) {
    if (options.format === "json") {
      const view = {
        schema_version: 1,
        agent_version: VERSION,
        enrolled: false,
        state_dir: ctx.config.stateDir,
        running: false,
      };
      ctx.stdout(JSON.stringify(view, null, 2) + "\n");
    } else if (options.format === "prometheus") {
      const { renderNotEnrolledMetrics } = await import("../state/prometheus_metrics.ts");
      ctx.stdout(renderNotEnrolledMetrics(VERSION));
    }
    throw new NotEnrolledError(
      `Not enrolled: no identity in ${
        JSON.stringify(ctx.config.stateDir)
      }; run "oneconnect-agent enroll --url <platform-url>"`,
    );
  }
  const identity = await store.load();
  const status = await readStatus(statusPath(ctx.config.stateDir), { logger: ctx.logger });
  const process = agentProcess(await lockHolder(ctx.config.stateDir));
  if (options.format === "json") {
    ctx.stdout(JSON.stringify(statusView(identity, status, process), null, 2) + "\n");
  } else if (options.format === "prometheus") {
    const { renderPrometheusMetrics } = await import("../state/prometheus_metrics.ts");
    ctx.stdout(renderPrometheusMetrics({ ...identity, version: VERSION }, status, Date.now()));
  } else {
    ctx.stdout(renderStatusText(identity, status, Date.now(), process));
  }
  if (!options.health) return;
  const own = status !== null && status.agent_id === identity.agent_id ? status : null;
  const { health, exitCode } = agentHealth(process, own);
  if (health === "not_running") {
    throw new AgentError(
      `Agent ${JSON.stringify(identity.agent_id)} is not running (no process holds ${
        JSON.stringify(ctx.config.stateDir)
      }); start the service (systemctl start oneconnect-agent)`,
      exitCode,
    );
  }
  if (health === "failing") {
    throw new AgentError(
      `Agent ${JSON.stringify(identity.agent_id)} is running but its heartbeats are failing (${
        own?.consecutive_failures ?? 0
      } consecutive${own?.last_error ? `: ${own.last_error.message}` : ""})`,
      exitCode,
    );
  }
}
