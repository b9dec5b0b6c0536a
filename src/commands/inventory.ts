import type { CommandContext } from "../context.ts";
import { sampledSnapshot, TelemetryCollector } from "../telemetry/collector.ts";

/** `inventory`: prints one telemetry snapshot as pretty JSON. */
export async function inventoryCommand(ctx: CommandContext): Promise<void> {
  const telemetry = await sampledSnapshot(new TelemetryCollector({ logger: ctx.logger }));
  ctx.stdout(JSON.stringify(telemetry, null, 2) + "\n");
}
