import { z } from "zod";
import { runChild } from "./child_process.ts";
import type { CommandContext } from "./context.ts";
import type { Logger } from "./log.ts";
import { VERSION } from "./version.ts";

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
    /** Null on every OS with Deno 2.9: it never measures page cache, and /proc needs --allow-all. */
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

/** Everything the collector asks of the operating system, injected so tests can drive each branch. */
export interface SystemSeam {
  /** `Deno.build.os`. */
  readonly os: string;
  /** `Deno.build.arch`. */
  readonly arch: string;
  hostname(): string;
  osRelease(): string;
  osUptime(): number;
  loadavg(): number[];
  systemMemoryInfo(): Deno.SystemMemoryInfo;
  networkInterfaces(): Deno.NetworkInterfaceInfo[];
  hardwareConcurrency(): number;
  readTextFile(path: string): Promise<string>;
  /** Runs the program at absolute `path` and resolves to its stdout; rejects on a non-zero exit. */
  runCommand(path: string, args: string[]): Promise<string>;
}

const COMMAND_TIMEOUT_MS = 10_000;

/** The real operating system, through Deno's APIs. */
export const denoSystem: SystemSeam = {
  os: Deno.build.os,
  arch: Deno.build.arch,
  hostname: () => Deno.hostname(),
  osRelease: () => Deno.osRelease(),
  osUptime: () => Deno.osUptime(),
  loadavg: () => Deno.loadavg(),
  systemMemoryInfo: () => Deno.systemMemoryInfo(),
  networkInterfaces: () => Deno.networkInterfaces(),
  hardwareConcurrency: () => navigator.hardwareConcurrency,
  readTextFile: (path) => Deno.readTextFile(path),
  runCommand: async (path, args) => {
    const out = await runChild(path, args, { timeoutMs: COMMAND_TIMEOUT_MS });
    if (!out.success) throw new Error(`${path} exited with code ${out.code}`);
    return out.stdout;
  },
};

/** macOS version tool; like every helper here it runs once per process and is in `--allow-run`. */
export const SW_VERS = "/usr/bin/sw_vers";
/** macOS registry explorer, for IOPlatformUUID. */
export const IOREG = "/usr/sbin/ioreg";
/** Windows registry tool, for MachineGuid. */
export const REG_EXE = "C:\\Windows\\System32\\reg.exe";

/** Linux os-release files, in the order os-release(5) says to try them. */
export const OS_RELEASE_FILES = ["/etc/os-release", "/usr/lib/os-release"] as const;
/** Linux machine-id files: systemd's, then the D-Bus copy older or minimal systems keep. */
export const MACHINE_ID_FILES = ["/etc/machine-id", "/var/lib/dbus/machine-id"] as const;

/** Parses os-release(5) text: KEY=VALUE lines, values optionally quoted with shell escapes. */
export function parseOsRelease(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!.trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1).replace(/\\(["\\`$])/g, "$1");
    } else if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) {
      value = value.slice(1, -1);
    }
    fields.set(m[1]!, value);
  }
  return fields;
}

/** Parses `sw_vers` output (`ProductName:\tmacOS` lines) into name and version. */
export function parseSwVers(text: string): { name: string | null; version: string | null } {
  const get = (key: string) => {
    const m = new RegExp(`^${key}:\\s*(.+?)\\s*$`, "m").exec(text);
    return m ? m[1]! : null;
  };
  return { name: get("ProductName"), version: get("ProductVersion") };
}

const UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";

/** Extracts IOPlatformUUID from `ioreg -rd1 -c IOPlatformExpertDevice` output. */
export function parseIoregPlatformUuid(text: string): string | null {
  const m = new RegExp(`"IOPlatformUUID"\\s*=\\s*"(${UUID})"`).exec(text);
  return m ? m[1]!.toUpperCase() : null;
}

/** Extracts MachineGuid from `reg query HKLM\SOFTWARE\Microsoft\Cryptography /v MachineGuid`. */
export function parseRegMachineGuid(text: string): string | null {
  const m = new RegExp(`^\\s*MachineGuid\\s+REG_SZ\\s+(${UUID})\\s*$`, "mi").exec(text);
  return m ? m[1]!.toLowerCase() : null;
}

/** Validates a Linux machine-id file's content: 32 hex digits ("uninitialized" is not an id). */
export function parseMachineIdFile(text: string): string | null {
  const id = text.trim().toLowerCase();
  return /^[0-9a-f]{32}$/.test(id) && !/^0+$/.test(id) ? id : null;
}

/**
 * Windows version from `Deno.osRelease()` ("10.0.22631"). The NT build number is what is reliable:
 * the marketing name is not derivable from it (Server 2019 and Windows 10 1809 share build 17763).
 */
export function parseWindowsRelease(release: string): string | null {
  return /^\d+\.\d+\.\d+$/.test(release.trim()) ? release.trim() : null;
}

/** Whether `address` is loopback or link-local, i.e. not reachable from beyond this host or link. */
export function isInternalAddress(family: string, address: string): boolean {
  if (family === "IPv4") return /^127\./.test(address) || /^169\.254\./.test(address);
  const a = address.toLowerCase();
  return a === "::1" || /^fe[89ab][0-9a-f]:/.test(a);
}

function byteCount(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) && value >= 0
    ? Math.round(value)
    : null;
}

function nonEmpty(value: string): string | null {
  const v = value.trim();
  return v === "" || v === "Unknown" ? null : v;
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim();
}

interface StaticFacts {
  os_release: string | null;
  os_name: string | null;
  os_version: string | null;
  machine_id: string | null;
  cpu_count: number | null;
}

/** Options for {@linkcode TelemetryCollector}. */
export interface TelemetryCollectorOptions {
  system?: SystemSeam;
  logger?: Logger;
  now?: () => Date;
}

/**
 * Collects host inventory and metrics. Static facts (OS release, name and version, machine id, CPU
 * count) are read once per collector, which lives as long as the process;
 * every source that fails yields `null` and a single debug line, never an exception.
 */
export class TelemetryCollector {
  readonly #system: SystemSeam;
  readonly #logger: Logger | undefined;
  readonly #now: () => Date;
  #static: Promise<StaticFacts> | undefined;
  // Sources already reported, so a permanently missing one costs one debug line, not one per beat.
  readonly #reported = new Set<string>();

  constructor(options: TelemetryCollectorOptions = {}) {
    this.#system = options.system ?? denoSystem;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => new Date());
  }

  /** Host inventory: static facts from the cache, hostname and addresses read fresh. */
  async host(): Promise<Host> {
    this.#static ??= this.#readStatic();
    const facts = await this.#static;
    const sys = this.#system;
    return {
      hostname: this.#try("hostname", () => nonEmpty(sys.hostname())),
      os: sys.os,
      arch: sys.arch,
      os_release: facts.os_release,
      os_name: facts.os_name,
      os_version: facts.os_version,
      cpu_count: facts.cpu_count,
      machine_id: facts.machine_id,
      network_interfaces: this.#try("network_interfaces", () => this.#interfaces()),
    };
  }

  /** Metrics sampled now: uptime, load average and memory. */
  metrics(): Metrics {
    const sys = this.#system;
    return {
      uptime_seconds: this.#try("uptime_seconds", () => {
        const up = sys.osUptime();
        return Number.isFinite(up) && up >= 0 ? Math.floor(up) : null;
      }),
      load_average: this.#try("load_average", () => this.#loadAverage()),
      memory: this.#try("memory", () => this.#memory()),
    };
  }

  /** One full snapshot, as heartbeats and `inventory` carry it. */
  async collect(): Promise<Telemetry> {
    const host = await this.host();
    return {
      agent_version: VERSION,
      collected_at: this.#now().toISOString(),
      host,
      metrics: this.metrics(),
    };
  }

  #fail(source: string, error: unknown): null {
    if (!this.#reported.has(source)) {
      this.#reported.add(source);
      this.#logger?.debug(`Cannot read ${source}; reporting null`, {
        source,
        error: errorText(error),
      });
    }
    return null;
  }

  #try<T>(source: string, read: () => T | null): T | null {
    try {
      const value = read();
      return value === null ? this.#fail(source, "no usable value") : value;
    } catch (error) {
      return this.#fail(source, error);
    }
  }

  async #tryAsync<T>(source: string, read: () => Promise<T | null>): Promise<T | null> {
    try {
      const value = await read();
      return value === null ? this.#fail(source, "no usable value") : value;
    } catch (error) {
      return this.#fail(source, error);
    }
  }

  async #readStatic(): Promise<StaticFacts> {
    const sys = this.#system;
    // The kernel release only changes with a reboot, which restarts the agent too.
    const os_release = this.#try("os_release", () => nonEmpty(sys.osRelease()));
    const cpu_count = this.#try("cpu_count", () => {
      const n = sys.hardwareConcurrency();
      return Number.isInteger(n) && n > 0 ? n : null;
    });
    const [release, machine_id] = await Promise.all([
      this.#tryAsync("os_name", () => this.#osNameVersion(os_release)),
      this.#tryAsync("machine_id", () => this.#machineId()),
    ]);
    return {
      os_release,
      os_name: release?.name ?? null,
      os_version: release?.version ?? null,
      machine_id,
      cpu_count,
    };
  }

  async #osNameVersion(
    osRelease: string | null,
  ): Promise<{ name: string | null; version: string | null } | null> {
    const sys = this.#system;
    switch (sys.os) {
      case "linux": {
        const text = await this.#firstReadable(OS_RELEASE_FILES);
        const fields = parseOsRelease(text);
        // os-release(5): NAME defaults to "Linux"; VERSION_ID is absent on rolling releases.
        return { name: fields.get("NAME") || "Linux", version: fields.get("VERSION_ID") || null };
      }
      case "darwin": {
        const parsed = parseSwVers(await sys.runCommand(SW_VERS, []));
        return parsed.name === null && parsed.version === null ? null : parsed;
      }
      case "windows": {
        const version = osRelease === null ? null : parseWindowsRelease(osRelease);
        return version === null ? null : { name: "Windows", version };
      }
      default:
        return { name: null, version: null };
    }
  }

  async #machineId(): Promise<string | null> {
    const sys = this.#system;
    switch (sys.os) {
      case "linux": {
        const problems: string[] = [];
        for (const path of MACHINE_ID_FILES) {
          try {
            const id = parseMachineIdFile(await sys.readTextFile(path));
            if (id !== null) return id;
            problems.push(`${path}: not a machine id`);
          } catch (error) {
            problems.push(errorText(error));
          }
        }
        throw new Error(problems.join("; "));
      }
      case "darwin":
        return parseIoregPlatformUuid(
          await sys.runCommand(IOREG, ["-rd1", "-c", "IOPlatformExpertDevice"]),
        );
      case "windows":
        return parseRegMachineGuid(
          await sys.runCommand(REG_EXE, [
            "query",
            "HKLM\\SOFTWARE\\Microsoft\\Cryptography",
            "/v",
            "MachineGuid",
            "/reg:64",
          ]),
        );
      default:
        return null;
    }
  }

  async #firstReadable(paths: readonly string[]): Promise<string> {
    const problems: string[] = [];
    for (const path of paths) {
      try {
        return await this.#system.readTextFile(path);
      } catch (error) {
        problems.push(errorText(error));
      }
    }
    throw new Error(problems.join("; "));
  }

  #interfaces(): NetworkInterface[] {
    const out: NetworkInterface[] = [];
    for (const nic of this.#system.networkInterfaces()) {
      if (nic.family !== "IPv4" && nic.family !== "IPv6") continue;
      out.push({
        name: nic.name,
        family: nic.family,
        address: nic.address,
        mac: nic.mac,
        internal: isInternalAddress(nic.family, nic.address),
      });
    }
    return out;
  }

  #loadAverage(): [number, number, number] | null {
    const avg = this.#system.loadavg();
    const [one, five, fifteen] = avg;
    if (
      avg.length !== 3 || one === undefined || five === undefined || fifteen === undefined ||
      ![one, five, fifteen].every((v) => Number.isFinite(v) && v >= 0)
    ) {
      return null;
    }
    // Windows has no load average; Deno reports zeros there, which would read as an idle host.
    if (this.#system.os === "windows" && one === 0 && five === 0 && fifteen === 0) return null;
    const round = (v: number) => Math.round(v * 100) / 100;
    return [round(one), round(five), round(fifteen)];
  }

  #memory(): Metrics["memory"] {
    const sys = this.#system;
    const info = sys.systemMemoryInfo();
    const total = byteCount(info.total);
    // Deno reports zeros when the underlying call failed; a host without RAM does not run us.
    if (total === null || total === 0) return null;
    // What Deno 2.9 measures differs per OS (ext/os/sys_info.rs): it never fills `cached`, fills
    // `buffers` only on Linux, and on Windows puts ullAvailPhys in `free`, leaves `available` 0
    // and scales swap by 1/1000. Unmeasured figures are null rather than a misleading 0. Reading
    // `Cached:` from /proc/meminfo ourselves is not an option: Deno demands --allow-all for /proc.
    switch (sys.os) {
      case "linux":
        return {
          total_bytes: total,
          free_bytes: byteCount(info.free),
          available_bytes: byteCount(info.available),
          buffers_bytes: byteCount(info.buffers),
          cached_bytes: null,
          swap_total_bytes: byteCount(info.swapTotal),
          swap_free_bytes: byteCount(info.swapFree),
        };
      case "windows":
        return {
          total_bytes: total,
          free_bytes: null,
          available_bytes: byteCount(info.free),
          buffers_bytes: null,
          cached_bytes: null,
          swap_total_bytes: null,
          swap_free_bytes: null,
        };
      default:
        return {
          total_bytes: total,
          free_bytes: byteCount(info.free),
          available_bytes: byteCount(info.available),
          buffers_bytes: null,
          cached_bytes: null,
          swap_total_bytes: byteCount(info.swapTotal),
          swap_free_bytes: byteCount(info.swapFree),
        };
    }
  }
}

/** `inventory`: prints one telemetry snapshot as pretty JSON. */
export async function inventoryCommand(ctx: CommandContext): Promise<void> {
  const telemetry = await new TelemetryCollector({ logger: ctx.logger }).collect();
  ctx.stdout(JSON.stringify(telemetry, null, 2) + "\n");
}
