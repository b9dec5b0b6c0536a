/**
 * `run --metrics-file`: keeps a Prometheus textfile current for node_exporter's textfile
 * collector, rewritten atomically (temp file + rename, as the collector requires) after each
 * heartbeat attempt, never more often.
 */
import { replaceFileSync } from "../file_system.ts";
import type { Logger } from "../log.ts";
import {
  METRICS_FILE_MODE,
  renderNotEnrolledMetrics,
  renderPrometheusMetrics,
} from "./prometheus_metrics.ts";
import type { StatusIdentityFacts } from "./status_store.ts";
import type { StatusSink } from "./status_recorder.ts";
import { VERSION } from "../version.ts";
import { errorMessage } from "../errors.ts";
import { denoOwnershipHost, type OwnershipHost, requireSafeParents } from "./ownership.ts";

/**
 * Refuses (UsageError, exit 2) a metrics file whose directory is owned by someone other than root
 * or the agent's user, or whose directory or one above it is group/other-writable and not sticky:
 * the agent, often root, must never create and rename files where another user can swap names
 * under it (the rule node_exporter textfile guides give). Owners above the directory are not
 * checked: Debian's `/var/lib/prometheus` belongs to `prometheus`, who could at most make the
 * agent create its fixed-name file (exclusively, mode set on the handle) in another directory.
 */
export async function requireSafeMetricsDir(
  path: string,
  host: OwnershipHost = denoOwnershipHost,
): Promise<void> {
  await requireSafeParents(path, host, "metrics file", 1);
}

/** Options for {@linkcode withMetricsFile}. */
export interface MetricsFileOptions {
  path: string;
  identity: StatusIdentityFacts;
  logger: Logger;
  now?: () => number;
}

/**
 * Shortest spacing of two rewrites that record only another attempt of the same kind: a
 * Prometheus scrape interval (15 s by default), so an agent at a short heartbeat interval does not
 * rewrite a file nobody reads in between.
 */
const METRICS_FILE_MIN_SPACING_MS = 15_000;

/**
 * Wraps a status sink so that a save that records a new attempt (or a stop) also rewrites the
 * metrics file: at once when the agent's state changed (first write, success to failure or back,
 * stopped), else at most every {@linkcode METRICS_FILE_MIN_SPACING_MS}. Saves that record no new
 * attempt (sequence reservations, renewal state) never write it. A failed write is logged once and
 * never stops heartbeats.
 */
export function withMetricsFile(status: StatusSink, options: MetricsFileOptions): StatusSink {
  const now = options.now ?? Date.now;
  const identity = { ...options.identity, version: VERSION };
  const st = () => status.current;
  const attempt = () => `${st().last_attempt_at}|${st().stopped?.at ?? ""}`;
  const state = () => `${st().consecutive_failures > 0}|${st().stopped !== null}`;
  let writtenAttempt = attempt();
  let writtenState: string | undefined;
  let writtenAtMs = -Infinity;
  let failing = false;
  return {
    get current() {
      return status.current;
    },
    async save() {
      await status.save();
      if (attempt() === writtenAttempt) return;
      const nowMs = now();
      if (state() === writtenState && nowMs - writtenAtMs < METRICS_FILE_MIN_SPACING_MS) return;
      writtenAttempt = attempt();
      writtenState = state();
      writtenAtMs = nowMs;
      try {
        // Atomic (the collector must never read half a file), synchronous and not fsync'd: a
        // later heartbeat rewrites it, and async calls plus fsyncs cost more CPU per write
        // (`deno task bench-metrics-file`).
        replaceFileSync(
          options.path,
          renderPrometheusMetrics(identity, status.current, nowMs),
          METRICS_FILE_MODE,
        );
        if (failing) options.logger.info("Metrics file writable again", { path: options.path });
        failing = false;
      } catch (e) {
        if (!failing) {
          options.logger.warn(
            `Cannot write metrics file ${JSON.stringify(options.path)}: ${errorMessage(e)}`,
          );
        }
        failing = true;
      }
    },
  };
}

/**
 * Writes the metrics of a host without an identity (`oneconnect_agent_enrolled 0`) before `run`
 * exits 5, so that the host stays visible to monitoring; a failed write is only logged.
 */
export function writeNotEnrolledMetrics(path: string, logger: Logger): void {
  try {
    replaceFileSync(path, renderNotEnrolledMetrics(VERSION), METRICS_FILE_MODE);
  } catch (e) {
    logger.warn(`Cannot write metrics file ${JSON.stringify(path)}: ${errorMessage(e)}`);
  }
}
