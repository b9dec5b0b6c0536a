import { z } from "zod";

/** One address of one network interface. */
export const NetworkInterfaceSchema = z.object({
  name: z.string(),
  family: z.enum(["IPv4", "IPv6"]),
  address: z.string(),
  mac: z.string(),
  internal: z.boolean(),
});

/** Static and slowly-changing host facts, sent at enrollment and with every heartbeat. */
export const HostSchema = z.object({
  hostname: z.string().nullable(),
  os: z.string(),
  arch: z.string(),
  os_release: z.string().nullable(),
  os_name: z.string().nullable(),
  os_version: z.string().nullable(),
  cpu_count: z.number().int().nonnegative().nullable(),
  machine_id: z.string().nullable(),
  network_interfaces: z.array(NetworkInterfaceSchema).nullable(),
});
/** Host inventory. */
export type Host = z.infer<typeof HostSchema>;

const bytes = z.number().int().nonnegative().nullable();

/** Basic metrics sampled at each heartbeat. */
export const MetricsSchema = z.object({
  uptime_seconds: z.number().int().nonnegative().nullable(),
  load_average: z.tuple([z.number(), z.number(), z.number()]).nullable(),
  memory: z.object({
    total_bytes: bytes,
    free_bytes: bytes,
    available_bytes: bytes,
    buffers_bytes: bytes,
    cached_bytes: bytes,
    swap_total_bytes: bytes,
    swap_free_bytes: bytes,
  }).nullable(),
});
/** Metrics. */
export type Metrics = z.infer<typeof MetricsSchema>;

/** What `inventory` prints: one collection. */
export const TelemetrySchema = z.object({
  agent_version: z.string(),
  collected_at: z.iso.datetime({ offset: true }),
  host: HostSchema,
  metrics: MetricsSchema,
});
/** One telemetry snapshot. */
export type Telemetry = z.infer<typeof TelemetrySchema>;
