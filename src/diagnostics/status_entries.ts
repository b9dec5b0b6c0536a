/**
 * The heartbeat state as `status` and `--metrics-file` expose it: `status.json` (the fields the
 * agent defines, nothing else a file could carry), the Prometheus metrics, the clock offset and
 * the outage the next heartbeat would report.
 *
 * @module
 */
import { outageGap } from "../heartbeat/outage_gap.ts";
import { redactValue } from "../log.ts";
import { clockOffsetReport, describeOffset } from "../wire/clock_offset.ts";
import { renderPrometheusMetrics } from "../state/prometheus_metrics.ts";
import { type AgentStatus, StatusSchema } from "../state/status_store.ts";
import type { Identity } from "../state/identity_store.ts";
import { VERSION } from "../version.ts";
import type { DiagnosticEntry } from "./manifest.ts";
import { safeMessage } from "./sanitize.ts";

/** Copies of strings with every URL cut and secret-shaped text redacted, recursively. */
function safeStrings(value: unknown): unknown {
  if (typeof value === "string") return safeMessage(value);
  if (Array.isArray(value)) return value.map(safeStrings);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, safeStrings(v)]));
  }
  return value;
}

/** The status fields the schema names (a loose schema lets unknown ones through: they stay out). */
function knownStatusFields(status: AgentStatus): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(StatusSchema.shape)) {
    if (key in status) out[key] = (status as Record<string, unknown>)[key];
  }
  return safeStrings(redactValue(out)) as Record<string, unknown>;
}

/** The entries built from `status.json` (and the identity's public facts for the metrics). */
export function statusEntries(
  status: AgentStatus | null,
  identity: Identity | null,
  nowMs: number,
): DiagnosticEntry[] {
  const entries: DiagnosticEntry[] = [{
    name: "status.json",
    source: "status.json in the state directory (as `status --json` reads it)",
    noSecret:
      "only the fields the agent's status schema defines; messages redacted, URLs without user info or query",
    content: status === null ? { present: false } : knownStatusFields(status),
  }];
  if (identity !== null) {
    entries.push({
      name: "metrics.prom",
      source: "`status --format prometheus` (src/state/prometheus_metrics.ts)",
      noSecret: "counters, timestamps, the agent id and version: the metrics as exposed",
      content: renderPrometheusMetrics(
        {
          agent_id: identity.agent_id,
          platform_url: identity.platform_url,
          enrolled_at: identity.enrolled_at,
          certificate_not_after: identity.certificate_not_after,
          version: VERSION,
        },
        status,
        nowMs,
      ),
    });
  }
  const offset = status?.clock_offset ?? null;
  const gap = status === null ? undefined : outageGap(status);
  entries.push({
    name: "clock_and_outage.json",
    source: "status.json: the last measured clock offset and the current outage",
    noSecret: "numbers, timestamps, error kinds and codes; no message leaves with the gap",
    content: {
      clock_offset: offset === null ? null : {
        seconds: offset.seconds,
        measured_at: offset.measured_at,
        meaning: `the platform's clock ${describeOffset(offset.seconds)}`,
      },
      clock_offset_next_heartbeat: status === null ? null : clockOffsetReport(status) ?? null,
      outage: status === null || status.consecutive_failures === 0 ? null : {
        failing_since: status.failing_since,
        consecutive_failures: status.consecutive_failures,
        last_error: status.last_error === null ? null : {
          kind: status.last_error.kind,
          http_status: status.last_error.http_status,
          code: status.last_error.code,
        },
      },
      outage_gap_next_heartbeat: gap ?? null,
    },
  });
  return entries;
}
