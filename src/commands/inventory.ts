import type { CommandContext } from "../context.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";

/** How long `inventory` watches CPU and network counters to report their rates. */
export const INVENTORY_SAMPLE_MS = 1000;

/** `inventory`: prints one telemetry snapshot as pretty JSON. */
export async function inventoryCommand(ctx: CommandContext): Promise<void> {
  const collector = new TelemetryCollector({ logger: ctx.logger });
  // CPU and network figures are deltas: take a baseline, wait, then collect.
  await collector.sampleMetrics(true);
  await new Promise((resolve) => setTimeout(resolve, INVENTORY_SAMPLE_MS));
  await collector.refresh(true);
  const telemetry = await collector.collect();
  ctx.stdout(JSON.stringify(telemetry, null, 2) + "\n");
}
