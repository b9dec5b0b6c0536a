import type { CommandContext } from "../config/context.ts";
import { sampledSnapshot, TelemetryCollector } from "../telemetry/collector.ts";
import { FILESYSTEM_FIELDS } from "../wire/telemetry_wire.ts";

/** For people: each filesystem tuple of the wire becomes an object naming its fields. */
function labelled(key: string, value: unknown): unknown {
  if (key !== "mounts" || !Array.isArray(value)) return value;
  return value.map((row) =>
    Array.isArray(row)
      ? Object.fromEntries(FILESYSTEM_FIELDS.map((name, i) => [name, row[i]]))
      : row
  );
}

/**
 * `inventory`: prints one telemetry snapshot as pretty JSON, filesystems labelled (the wire keeps
 * them as compact tuples).
 */
export async function inventoryCommand(ctx: CommandContext): Promise<void> {
  const telemetry = await sampledSnapshot(new TelemetryCollector({ logger: ctx.logger }));
  ctx.stdout(JSON.stringify(telemetry, labelled, 2) + "\n");
}
