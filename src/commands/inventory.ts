import type { CommandContext } from "../context.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { FILESYSTEM_FIELDS } from "../platform/telemetry_wire.ts";

/** For people: each filesystem tuple of the wire becomes an object naming its fields. */
function labelled(key: string, value: unknown): unknown {
  if (key !== "mounts" || !Array.isArray(value)) return value;
  return value.map((row) =>
    Array.isArray(row)
      ? Object.fromEntries(FILESYSTEM_FIELDS.map((name, i) => [name, row[i]]))
      : row
  );
}

/** How long `inventory` watches CPU and network counters to report their rates. */
export const INVENTORY_SAMPLE_MS = 1000;

/**
 * `inventory`: prints one telemetry snapshot as pretty JSON, filesystems labelled (the wire keeps
 * them as compact tuples).
 */
export async function inventoryCommand(ctx: CommandContext): Promise<void> {
  const collector = new TelemetryCollector({ logger: ctx.logger });
  // CPU and network figures are deltas: take a baseline, wait, then collect.
  await collector.sampleMetrics(true);
  await new Promise((resolve) => setTimeout(resolve, INVENTORY_SAMPLE_MS));
  await collector.refresh(true);
  const telemetry = await collector.collect();
  ctx.stdout(JSON.stringify(telemetry, labelled, 2) + "\n");
}
