/**
 * The telemetry a heartbeat or enrollment carries (`host`, `metrics`), as the wire contract
 * defines it: kept beside the contract so that it sits below the collectors that fill it in.
 */
import * as z from "../zod.ts";

const percent = z.nullable(z.number().check(z.gte(0), z.lte(100)));

/**
 * CPU utilisation since the previous sample, in percent of all cores (one decimal). `iowait` and
 * `steal` are null where the source does not count them apart (see `cpuUsage`).
 */
const CpuUsageSchema = z.object({
  user: percent,
  system: percent,
  idle: percent,
  iowait: percent,
  steal: percent,
});
/** CPU utilisation over one interval. */
export type CpuUsage = z.infer<typeof CpuUsageSchema>;

const fsCount = z.nullable(z.int().check(z.nonnegative()));

/**
 * One filesystem as a compact tuple (heartbeats stay under 1,024 bytes): mount point, type, total,
 * free and available bytes (available = free to unprivileged users), total and free inodes
 * (null where the filesystem has no inode table).
 */
const FilesystemSchema = z.tuple([
  z.string(),
  z.string(),
  fsCount,
  fsCount,
  fsCount,
  fsCount,
  fsCount,
]);
/** `[mount, type, total_bytes, free_bytes, available_bytes, inodes_total, inodes_free]`. */
export type Filesystem = z.infer<typeof FilesystemSchema>;
/** The names of a {@linkcode Filesystem} tuple's fields, in order (for output people read). */
export const FILESYSTEM_FIELDS = [
  "mount",
  "type",
  "total_bytes",
  "free_bytes",
  "available_bytes",
  "inodes_total",
  "inodes_free",
] as const;

/** Filesystem space, collected at most every 5 minutes (`FILESYSTEM_INTERVAL_MS`). */
const FilesystemsSchema = z.object({
  /** Seconds since the figures were collected. */
  age_seconds: z.int().check(z.nonnegative()),
  mounts: z.array(FilesystemSchema),
});
/** Filesystems and the age of their figures. */
export type Filesystems = z.infer<typeof FilesystemsSchema>;

const netCount = z.int().check(z.nonnegative());

/**
 * Traffic of one interface over the interval, as a compact tuple: received bytes, packets and
 * errors, then sent bytes, packets and errors. Null when a counter went backwards (wrap, reset).
 */
const InterfaceTrafficSchema = z.nullable(
  z.tuple([netCount, netCount, netCount, netCount, netCount, netCount]),
);
/** `[rx_bytes, rx_packets, rx_errors, tx_bytes, tx_packets, tx_errors]` or null. */
export type InterfaceTraffic = z.infer<typeof InterfaceTrafficSchema>;

/** Network traffic per non-loopback interface since the previous sample. */
const NetworkTrafficSchema = z.object({
  interval_seconds: z.int().check(z.nonnegative()),
  interfaces: z.record(z.string(), InterfaceTrafficSchema),
});
/** Network traffic over one interval. */
export type NetworkTraffic = z.infer<typeof NetworkTrafficSchema>;

/** Whether the host is a container, a virtual machine or neither, and which technology if known. */
const VirtualizationSchema = z.object({
  kind: z.enum(["container", "vm", "none"]),
  technology: z.nullable(z.string()),
});
/** Virtualization of the host. */
export type Virtualization = z.infer<typeof VirtualizationSchema>;

/** One address of one network interface. */
export const NetworkInterfaceSchema = z.object({
  name: z.string(),
  family: z.enum(["IPv4", "IPv6"]),
  address: z.string(),
  mac: z.string(),
  /** True for loopback and link-local addresses, which are unreachable from beyond this host or link. */
  internal: z.boolean(),
});
/** A network interface address. */
export type NetworkInterface = z.infer<typeof NetworkInterfaceSchema>;

/**
 * Static and slowly-changing host facts: sent at enrollment, and on a heartbeat when they changed
 * or when the platform does not advertise `host_digest`.
 */
export const HostSchema = z.object({
  hostname: z.nullable(z.string()),
  os: z.string(),
  arch: z.string(),
  os_release: z.nullable(z.string()),
  os_name: z.nullable(z.string()),
  os_version: z.nullable(z.string()),
  cpu_count: z.nullable(z.int().check(z.nonnegative())),
  machine_id: z.nullable(z.string()),
  network_interfaces: z.nullable(z.array(NetworkInterfaceSchema)),
  // Contract v1.3: optional so that v1.2 agents stay valid; this agent always sends them.
  cpu_model: z.optional(z.nullable(z.string())),
  /** Nominal or current frequency of the first core, MHz. */
  cpu_mhz: z.optional(z.nullable(z.int().check(z.gte(1)))),
  hardware_vendor: z.optional(z.nullable(z.string())),
  hardware_model: z.optional(z.nullable(z.string())),
  hardware_serial: z.optional(z.nullable(z.string())),
  /** Now minus uptime, to the second, taken once per agent process. */
  boot_time: z.optional(z.nullable(z.iso.datetime({ offset: true }))),
  /** IANA time zone name. */
  time_zone: z.optional(z.nullable(z.string())),
  fqdn: z.optional(z.nullable(z.string())),
  domain: z.optional(z.nullable(z.string())),
  virtualization: z.optional(z.nullable(VirtualizationSchema)),
  /** The agent binary's target triple (`Deno.build.target`). */
  agent_platform: z.optional(z.nullable(z.string())),
});
/** Host inventory. */
export type Host = z.infer<typeof HostSchema>;

const bytes = z.nullable(z.int().check(z.nonnegative()));

/** Basic metrics sampled at each heartbeat. */
export const MetricsSchema = z.object({
  uptime_seconds: z.nullable(z.int().check(z.nonnegative())),
  load_average: z.nullable(z.tuple([z.number(), z.number(), z.number()])),
  memory: z.nullable(z.object({
    total_bytes: bytes,
    free_bytes: bytes,
    available_bytes: bytes,
    buffers_bytes: bytes,
    /** Null on every OS with Deno 2.9: it never measures page cache, and /proc needs --allow-all. */
    cached_bytes: bytes,
    swap_total_bytes: bytes,
    swap_free_bytes: bytes,
    /** v1.3: swap total minus swap free. */
    swap_used_bytes: z.optional(bytes),
  })),
  /**
   * v1.3: utilisation since the previous sample (Linux: /proc/stat, sampled with the network
   * counters at most every minute; elsewhere at every heartbeat). Null until a process has two
   * samples, or after a counter went backwards.
   */
  cpu: z.optional(z.nullable(CpuUsageSchema)),
  /**
   * v1.3: threads on the host, every process's included (kernel scheduling entities, Linux
   * /proc/loadavg), from the network sampler's latest run; absent on macOS and Windows.
   */
  threads: z.optional(z.nullable(z.int().check(z.nonnegative()))),
  /** v1.3: sent with the first heartbeat after each collection (at most every 5 minutes). */
  filesystems: z.optional(FilesystemsSchema),
  /** v1.3: sent with the first heartbeat after each sample (at most every minute; Linux, macOS). */
  network: z.optional(NetworkTrafficSchema),
});
/** Metrics. */
export type Metrics = z.infer<typeof MetricsSchema>;
