import * as z from "../zod.ts";
import { HostSchema, MetricsSchema } from "../wire/telemetry_wire.ts";

/** What `inventory` prints: one collection. */
export const TelemetrySchema = z.object({
  agent_version: z.string(),
  collected_at: z.iso.datetime({ offset: true }),
  host: HostSchema,
  metrics: MetricsSchema,
});
/** One telemetry snapshot. */
export type Telemetry = z.infer<typeof TelemetrySchema>;
