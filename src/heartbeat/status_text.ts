/** `status` for humans: one fact per line, times with how long ago or how soon. */
import { CERTIFICATE_WARNING_DAYS, certificateExpiry } from "../enrollment/renewal.ts";
import type { AgentStatus, StatusIdentityFacts } from "../state/status_store.ts";
import { describeOffset } from "../wire/clock_offset.ts";
import type { AgentProcess } from "./status_report.ts";

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
