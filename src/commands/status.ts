/** `oneconnect-agent status`: the identity and the heartbeat status, as text, JSON or Prometheus. */
import type { CommandContext } from "../config/context.ts";
import {
  healthProblem,
  notEnrolledView,
  readStatusReport,
  statusView,
} from "../heartbeat/status_report.ts";
import { renderStatusText } from "../heartbeat/status_text.ts";
import { VERSION } from "../version.ts";

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
  const report = await readStatusReport(ctx.config.stateDir, ctx.logger);
  if (!report.enrolled) {
    if (options.format === "json") {
      ctx.stdout(JSON.stringify(notEnrolledView(report.stateDir), null, 2) + "\n");
    } else if (options.format === "prometheus") {
      const { renderNotEnrolledMetrics } = await import("../state/prometheus_metrics.ts");
      ctx.stdout(renderNotEnrolledMetrics(VERSION));
    }
    throw report.error;
  }
  const { identity, status, process } = report;
  if (options.format === "json") {
    ctx.stdout(JSON.stringify(statusView(identity, status, process), null, 2) + "\n");
  } else if (options.format === "prometheus") {
    const { renderPrometheusMetrics } = await import("../state/prometheus_metrics.ts");
    ctx.stdout(renderPrometheusMetrics({ ...identity, version: VERSION }, status, Date.now()));
  } else {
    ctx.stdout(renderStatusText(identity, status, Date.now(), process));
  }
  const problem = options.health ? healthProblem(report) : null;
  if (problem !== null) throw problem;
}
