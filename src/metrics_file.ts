/**
 * `run --metrics-file`: keeps a Prometheus textfile current for node_exporter's textfile
 * collector, rewritten atomically (temp file + rename, as the collector requires) after each
 * heartbeat attempt, never more often.
 */
import { denoFileSystem, type FileSystem } from "./file_system.ts";
import type { Logger } from "./log.ts";
import { METRICS_FILE_MODE, renderPrometheusMetrics } from "./prometheus_metrics.ts";
import type { StatusIdentityFacts, StatusStore } from "./status.ts";
import { VERSION } from "./version.ts";

/** The status a heartbeat loop writes: its current value and an atomic save. */
export type StatusSaver = Pick<StatusStore, "current" | "save">;

/** Options for {@linkcode withMetricsFile}. */
export interface MetricsFileOptions {
  path: string;
  identity: StatusIdentityFacts;
  logger: Logger;
  fs?: FileSystem;
  now?: () => number;
}

/**
 * Wraps a status sink so that a save that records a new attempt (or a stop) also rewrites the
 * metrics file. Saves in between (sequence reservations, renewal state) do not write it. A failed
 * write is logged once and never stops heartbeats.
 */
export function withMetricsFile(status: StatusSaver, options: MetricsFileOptions): StatusSaver {
  const fs = options.fs ?? denoFileSystem;
  const now = options.now ?? Date.now;
  const identity = { ...options.identity, version: VERSION };
  const key = () => `${status.current.last_attempt_at}|${status.current.stopped?.at ?? ""}`;
  let written = key();
  let failing = false;
  return {
    get current() {
      return status.current;
    },
    async save() {
      await status.save();
      const k = key();
      if (k === written) return;
      written = k;
      try {
        await fs.writeFileAtomic(
          options.path,
          renderPrometheusMetrics(identity, status.current, now()),
          METRICS_FILE_MODE,
        );
        if (failing) options.logger.info("Metrics file writable again", { path: options.path });
        failing = false;
      } catch (e) {
        if (!failing) {
          options.logger.warn(
            `Cannot write metrics file ${JSON.stringify(options.path)}: ${(e as Error).message}`,
          );
        }
        failing = true;
      }
    },
  };
}
