/**
 * The agent's state in the Prometheus text exposition format (version 0.0.4), for
 * `status --format prometheus` and the node_exporter textfile collector (`run --metrics-file`).
 * Built from `status.json` and the identity facts alone, so both print the same thing.
 */
import type { AgentStatus, StatusIdentityFacts } from "./status_store.ts";

/** Mode of the metrics file: node_exporter usually runs as another user and must read it. */
export const METRICS_FILE_MODE = 0o644;

type Kind = "gauge" | "counter";

interface Family {
  name: string;
  kind: Kind;
  help: string;
  /** Labels and value of each sample; a family with no sample is left out. */
  samples: Array<{ labels?: Record<string, string>; value: number }>;
}

/** Escapes a label value as the exposition format requires (backslash, quote, newline). */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function seconds(iso: string | null | undefined): number | undefined {
  if (iso === null || iso === undefined) return undefined;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function gauge(name: string, help: string, value: number | undefined): Family {
  return { name, kind: "gauge", help, samples: value === undefined ? [] : [{ value }] };
}

function enrolledGauge(value: 0 | 1): Family {
  return gauge(
    "oneconnect_agent_enrolled",
    "1 when this host holds an agent identity, else 0.",
    value,
  );
}

/** The metrics of a host without an identity: it stays visible to monitoring, enrolled 0. */
export function renderNotEnrolledMetrics(version: string): string {
  return renderFamilies([
    enrolledGauge(0),
    {
      name: "oneconnect_agent_info",
      kind: "gauge",
      help: "Agent version and identity; always 1.",
      samples: [{ labels: { version, agent_id: "" }, value: 1 }],
    },
  ]);
}

/**
 * Renders the metrics. Timestamps are Unix seconds; a success that never happened is 0, so that
 * `time() - oneconnect_agent_last_success_timestamp_seconds` alerts on an agent that never got
 * through. Other absent facts (no renewal scheduled, no wait) leave their metric out.
 */
export function renderPrometheusMetrics(
  identity: StatusIdentityFacts & { version: string },
  status: AgentStatus | null,
  nowMs: number,
): string {
  const s = status !== null && status.agent_id === identity.agent_id ? status : null;
  const nextAttempt = s?.stopped === null ? seconds(s?.next_attempt_at) : undefined;
  const families: Family[] = [
    enrolledGauge(1),
    {
      name: "oneconnect_agent_info",
      kind: "gauge",
      help: "Agent version and identity; always 1.",
      samples: [{
        labels: { version: identity.version, agent_id: identity.agent_id },
        value: 1,
      }],
    },
    gauge(
      "oneconnect_agent_last_success_timestamp_seconds",
      "Time of the last heartbeat the platform accepted (0: never).",
      seconds(s?.last_success_at) ?? 0,
    ),
    gauge(
      "oneconnect_agent_last_attempt_timestamp_seconds",
      "Time of the last heartbeat attempt.",
      seconds(s?.last_attempt_at),
    ),
    gauge(
      "oneconnect_agent_consecutive_failures",
      "Failed heartbeat attempts since the last success.",
      s?.consecutive_failures ?? 0,
    ),
    {
      name: "oneconnect_agent_heartbeats_sent_total",
      kind: "counter",
      help: "Heartbeats the platform accepted.",
      samples: [{ value: s?.heartbeats_sent_total ?? 0 }],
    },
    {
      name: "oneconnect_agent_heartbeats_failed_total",
      kind: "counter",
      help: "Heartbeat attempts that failed (network, TLS, platform error or rejection).",
      samples: [{ value: s?.heartbeats_failed_total ?? 0 }],
    },
    gauge(
      "oneconnect_agent_heartbeat_interval_seconds",
      "Heartbeat interval in force.",
      s?.interval_seconds ?? undefined,
    ),
    gauge(
      "oneconnect_agent_certificate_expiry_timestamp_seconds",
      "Expiry (notAfter) of the agent certificate.",
      seconds(s?.certificate_expires_at ?? identity.certificate_not_after),
    ),
    gauge(
      "oneconnect_agent_next_renewal_timestamp_seconds",
      "When the next certificate renewal (or retry) is due.",
      seconds(s?.renewal?.next_at),
    ),
    gauge(
      "oneconnect_agent_last_renewal_success_timestamp_seconds",
      "Time of the last successful certificate renewal.",
      seconds(s?.renewal?.last_renewed_at),
    ),
    gauge(
      "oneconnect_agent_permission_repairs",
      "Secret files or directories whose permissions were tightened at the last start.",
      s?.permission_repairs.length ?? 0,
    ),
    gauge(
      "oneconnect_agent_next_attempt_timestamp_seconds",
      "When the next heartbeat attempt is scheduled.",
      nextAttempt,
    ),
    gauge(
      "oneconnect_agent_wait_seconds",
      "Seconds until the next heartbeat attempt.",
      nextAttempt === undefined ? undefined : Math.max(0, Math.round(nextAttempt - nowMs / 1000)),
    ),
    gauge(
      "oneconnect_agent_stopped",
      "1 when the heartbeat loop has stopped (shutdown, rejection, cloned identity), else 0.",
      s?.stopped ? 1 : 0,
    ),
  ];
  return renderFamilies(families);
}

function renderFamilies(families: readonly Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.kind}`);
    for (const sample of f.samples) {
      const labels = sample.labels
        ? `{${
          Object.entries(sample.labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(
            ",",
          )
        }}`
        : "";
      lines.push(`${f.name}${labels} ${formatValue(sample.value)}`);
    }
  }
  return lines.join("\n") + "\n";
}
