/** The `telemetry.json` entry: the host inventory and metrics the next heartbeat would send. */
import type { Logger } from "../log.ts";
import { sampledSnapshot, TelemetryCollector } from "../telemetry/collector.ts";
import type { DiagnosticEntry } from "./manifest.ts";

/** How long CPU and network counters are watched for their rates (shorter than `inventory`'s). */
const DIAGNOSTICS_SAMPLE_MS = 500;

/** The `telemetry.json` entry, as `inventory` collects it. */
export async function telemetryEntry(
  logger: Logger,
  collector = new TelemetryCollector({ logger }),
): Promise<DiagnosticEntry> {
  return {
    name: "telemetry.json",
    source: "the telemetry collector heartbeats use (`oneconnect-agent inventory`)",
    noSecret: "the host inventory and metrics the platform receives with every heartbeat",
    content: await sampledSnapshot(collector, DIAGNOSTICS_SAMPLE_MS),
  };
}
