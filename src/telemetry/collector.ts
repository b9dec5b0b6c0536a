import * as z from "../zod.ts";
import { runChild } from "../child_process.ts";
import type { CommandContext } from "../context.ts";
import {
  type CoreTimes,
  type CpuCounters,
  cpuUsage,
  parseProcStat,
  PROC_STAT,
  sumCoreTimes,
} from "./cpu_usage.ts";
import { DF, DF_ARGS, FILESYSTEM_INTERVAL_MS, parseDfOutput } from "./filesystems.ts";
import {
  BIOS_KEY,
  CONTAINER_MARKERS,
  detectVirtualization,
  DMI_PRODUCT,
  DMI_SERIAL,
  DMI_VENDOR,
  fqdnOf,
  type HardwareIdentity,
  HEAD,
  identityValue,
  LINUX_INVENTORY_ARGS,
  parseCpuinfo,
  parseHeadSections,
  parseIoregHardware,
  parseRegBios,
  PROC_1_CGROUP,
  PROC_CPUINFO,
} from "./hardware.ts";
import {
  type InterfaceCounters,
  NETWORK_INTERVAL_MS,
  networkTraffic,
  parseProcNetDev,
} from "./network_counters.ts";
import {
  type CpuUsage,
  type Filesystem,
  type Host,
  HostSchema,
  type Metrics,
  MetricsSchema,
  type NetworkInterface,
  type NetworkTraffic,
  type Virtualization,
} from "../platform/telemetry_wire.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { errorMessage } from "../errors.ts";

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
  /**
   * Runs the program at absolute `path` with an empty environment and resolves to its stdout;
   * rejects on a non-zero exit unless `anyExit` (e.g. `head` exits 1 when one of its files is
   * missing, and still prints the others).
   */
  runCommand(
    path: string,
    args: string[],
    options?: { anyExit?: boolean },
  ): Promise<string>;
  /**
   * `node:os` `cpus()`: per-core model, MHz and cumulative times; never called on Linux (/proc
   * has them, and node:os would start the Node compat layer). Absent: CPU fields null.
   */
  cpus?(): Promise<{ model: string; speed: number; times: CoreTimes }[]>;
  /** `Deno.readLink`, for the /etc/localtime link that names the system time zone. */
  readLink?(path: string): Promise<string>;
  /** `Deno.build.target`. */
  readonly target?: string;
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
  runCommand: async (path, args, options) => {
    // The C locale of runChild's cleared environment gives the output the parsers expect.
    const out = await runChild(path, args, { timeoutMs: COMMAND_TIMEOUT_MS });
    if (!out.success && !options?.anyExit) throw new Error(`${path} exited with code ${out.code}`);
    return out.stdout;
  },
  // Loaded on first use only: on Linux nothing calls it, so a steady run stays off node:os.
  cpus: async () => (await import("node:os")).cpus(),
  // Not Intl.DateTimeFormat().resolvedOptions().timeZone: loading ICU costs ~6 MB of RSS.
  readLink: (path) => Deno.readLink(path),
  target: Deno.build.target,
};

/** macOS version tool; like every helper here it runs once per process and is in `--allow-run`. */
export const SW_VERS = "/usr/bin/sw_vers";
/** macOS registry explorer, for IOPlatformUUID. */
export const IOREG = "/usr/sbin/ioreg";
/** Linux network counters (read through {@linkcode HEAD}: Deno refuses /proc to --allow-read). */
export const PROC_NET_DEV = "/proc/net/dev";
/** Windows registry tool, for MachineGuid. */
export const REG_EXE = "C:\\Windows\\System32\\reg.exe";

/** Linux os-release files, in the order os-release(5) says to try them. */
export const OS_RELEASE_FILES = ["/etc/os-release", "/usr/lib/os-release"] as const;
/** Linux machine-id files: systemd's, then the D-Bus copy older or minimal systems keep. */
export const MACHINE_ID_FILES = ["/etc/machine-id", "/var/lib/dbus/machine-id"] as const;

/** The system time zone link (Linux, macOS) and Debian's plain-text copy of its name. */
export const LOCALTIME = "/etc/localtime";
/** Debian's time zone file. */
export const DEBIAN_TIMEZONE = "/etc/timezone";
/** Windows registry key naming the time zone. */
export const TIME_ZONE_KEY = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation";

/** The IANA zone name in an /etc/localtime link target (`../usr/share/zoneinfo/Europe/Berlin`). */
export function zoneFromLocaltimeLink(target: string): string | null {
  const m = /zoneinfo\/(?:posix\/|right\/)?([A-Za-z0-9_+-]+(?:\/[A-Za-z0-9_+-]+)*)$/.exec(target);
  return m ? m[1]! : null;
}

/** TimeZoneKeyName from `reg query ...\TimeZoneInformation /v TimeZoneKeyName`. */
export function parseRegTimeZone(text: string): string | null {
  const m = /^\s*TimeZoneKeyName\s+REG_SZ\s+(.+?)\s*$/mi.exec(text);
  return m ? m[1]! : null;
}

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

function swapUsed(info: Deno.SystemMemoryInfo): number | null {
  const total = byteCount(info.swapTotal);
  const free = byteCount(info.swapFree);
  return total === null || free === null || free > total ? null : total - free;
}

function nonEmpty(value: string): string | null {
  const v = value.trim();
  return v === "" || v === "Unknown" ? null : v;
}

interface StaticFacts {
  os_release: string | null;
  os_name: string | null;
  os_version: string | null;
  machine_id: string | null;
  cpu_count: number | null;
  cpu_model: string | null;
  cpu_mhz: number | null;
  hardware: HardwareIdentity;
  boot_time: string | null;
  time_zone: string | null;
  virtualization: Virtualization | null;
}

/** What the platform-specific inventory sources yielded (Linux /sys and /proc, ioreg, registry). */
interface PlatformFacts {
  hardware: HardwareIdentity;
  cpuinfo: string | null;
  cgroup: string | null;
  containerMarker: string | null;
  /** The platform's source failed as a whole (and said so). */
  failed: boolean;
}

const NO_HARDWARE: HardwareIdentity = { vendor: null, model: null, serial: null };

/** A source sampled by a child process at most every `intervalMs`; one run at a time. */
interface Sampler<T> {
  intervalMs: number;
  atMs: number | null;
  running: Promise<void> | null;
  /** Runs started, failed ones included. */
  runs: number;
  value: T | null;
  /** Not yet carried by a heartbeat. */
  fresh: boolean;
}

function sampler<T>(intervalMs: number): Sampler<T> {
  return { intervalMs, atMs: null, running: null, value: null, fresh: false, runs: 0 };
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
  #ioreg: Promise<string> | undefined;
  #cpuCounters: CpuCounters | null = null;
  #cpuUsage: CpuUsage | null = null;
  readonly #filesystems = sampler<{ atMs: number; mounts: Filesystem[] }>(FILESYSTEM_INTERVAL_MS);
  readonly #network = sampler<NetworkTraffic>(NETWORK_INTERVAL_MS);
  #netCounters: { atMs: number; counters: Map<string, InterfaceCounters> } | null = null;
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
    const hostname = this.#try("hostname", () => nonEmpty(sys.hostname()));
    const { fqdn, domain } = fqdnOf(hostname);
    return {
      hostname,
      os: sys.os,
      arch: sys.arch,
      os_release: facts.os_release,
      os_name: facts.os_name,
      os_version: facts.os_version,
      cpu_count: facts.cpu_count,
      machine_id: facts.machine_id,
      network_interfaces: this.#try("network_interfaces", () => this.#interfaces()),
      cpu_model: facts.cpu_model,
      cpu_mhz: facts.cpu_mhz,
      hardware_vendor: facts.hardware.vendor,
      hardware_model: facts.hardware.model,
      hardware_serial: facts.hardware.serial,
      boot_time: facts.boot_time,
      time_zone: facts.time_zone,
      fqdn,
      domain,
      virtualization: facts.virtualization,
      agent_platform: sys.target ?? null,
    };
  }

  /**
   * Metrics sampled now: uptime, load average, memory and CPU utilisation since the previous
   * call. Filesystems and network traffic come from samplers that run in child processes: they
   * appear from the first call after each sample (see {@linkcode refresh}) until a heartbeat
   * carrying them is {@linkcode delivered}, and are left out after that, which keeps steady
   * heartbeats small without losing a sample to a failed heartbeat.
   */
  metrics(): Metrics {
    const metrics = this.#baseMetrics();
    for (
      const [key, s] of [["filesystems", this.#filesystems], ["network", this.#network]] as const
    ) {
      if (s.fresh) this.#attach(metrics, key);
    }
    return metrics;
  }

  /** Marks the sampled figures that `metrics` carried as accepted by the platform. */
  delivered(metrics: Metrics): void {
    if (metrics.filesystems !== undefined) this.#filesystems.fresh = false;
    if (metrics.network !== undefined) this.#network.fresh = false;
  }

  /** Runs the samplers that are due (all of them with `force`), then {@linkcode metrics}. */
  async sampleMetrics(force = false): Promise<Metrics> {
    await this.refresh(force);
    return this.metrics();
  }

  /**
   * Runs each child-process sampler (Linux `df`, /proc/net/dev) that is due, or all with `force`;
   * never rejects. Concurrent calls share a run.
   */
  async refresh(force = false): Promise<void> {
    if (this.#system.os !== "linux") return await this.#sampleCpuTimes();
    const now = this.#nowMs();
    const due = (s: Sampler<unknown>) => force || s.atMs === null || now - s.atMs >= s.intervalMs;
    const runs: Promise<void>[] = [];
    if (due(this.#filesystems)) {
      runs.push(this.#run(this.#filesystems, "filesystems", async () => {
        const mounts = parseDfOutput(await this.#system.runCommand(DF, [...DF_ARGS]));
        return { atMs: this.#nowMs(), mounts };
      }));
    }
    // The first network run is only a baseline: the second comes with the next heartbeat, so CPU
    // and traffic figures appear from the second heartbeat on, then at most once a minute.
    if (due(this.#network) || this.#network.runs === 1) {
      runs.push(this.#run(this.#network, "network", async () => {
        // One child for both: CPU counters ride the network sampler's minute.
        let sections: Map<string, string>;
        try {
          sections = parseHeadSections(
            await this.#system.runCommand(HEAD, ["-n", "4096", PROC_STAT, PROC_NET_DEV], {
              anyExit: true,
            }),
          );
        } catch (error) {
          this.#cpuUsage = this.#fail("cpu", error);
          throw error;
        }
        const stat = sections.get(PROC_STAT);
        this.#takeCpuCounters(stat === undefined ? null : parseProcStat(stat));
        const text = sections.get(PROC_NET_DEV);
        if (text === undefined) throw new Error(`${HEAD} printed no ${PROC_NET_DEV}`);
        const sample = { atMs: this.#nowMs(), counters: parseProcNetDev(text) };
        const previous = this.#netCounters;
        this.#netCounters = sample;
        // The first sample is only the baseline of the next one.
        return previous === null
          ? undefined
          : networkTraffic(previous.counters, sample.counters, sample.atMs - previous.atMs);
      }));
    }
    await Promise.all(runs);
  }

  #run<T>(s: Sampler<T>, source: string, read: () => Promise<T | undefined>): Promise<void> {
    s.running ??= (async () => {
      s.atMs = this.#nowMs();
      s.runs++;
      try {
        const value = await read();
        if (value !== undefined) {
          s.value = value;
          s.fresh = true;
        }
      } catch (error) {
        this.#fail(source, error);
      } finally {
        s.running = null;
      }
    })();
    return s.running;
  }

  #attach(metrics: Metrics, key: "filesystems" | "network"): void {
    if (key === "network") {
      if (this.#network.value !== null) metrics.network = this.#network.value;
      return;
    }
    const fs = this.#filesystems.value;
    if (fs === null) return;
    metrics.filesystems = {
      age_seconds: Math.max(0, Math.floor((this.#nowMs() - fs.atMs) / 1000)),
      mounts: fs.mounts,
    };
  }

  #nowMs(): number {
    return this.#now().getTime();
  }

  #baseMetrics(): Metrics {
    const sys = this.#system;
    return {
      uptime_seconds: this.#try("uptime_seconds", () => {
        const up = sys.osUptime();
        return Number.isFinite(up) && up >= 0 ? Math.floor(up) : null;
      }),
      load_average: this.#try("load_average", () => this.#loadAverage()),
      memory: this.#try("memory", () => this.#memory()),
      cpu: this.#cpuUsage,
    };
  }

  /**
   * One full snapshot, as `inventory` prints it: the samplers run when due, and the newest
   * filesystems and network figures are included whether or not a heartbeat carried them.
   */
  async collect(): Promise<Telemetry> {
    const [host] = await Promise.all([this.host(), this.refresh()]);
    const metrics = this.#baseMetrics();
    this.#attach(metrics, "filesystems");
    this.#attach(metrics, "network");
    return {
      agent_version: VERSION,
      collected_at: this.#now().toISOString(),
      host,
      metrics,
    };
  }

  /** macOS, Windows: CPU times from `node:os` at every refresh (each heartbeat). */
  async #sampleCpuTimes(): Promise<void> {
    const cpus = this.#system.cpus;
    if (!cpus) return;
    try {
      this.#takeCpuCounters(sumCoreTimes(await cpus()));
    } catch (error) {
      this.#cpuUsage = this.#fail("cpu", error);
    }
  }

  /** Utilisation since the previous sample; null on the first (an expected null: no debug line). */
  #takeCpuCounters(current: CpuCounters | null): void {
    if (current === null) {
      this.#cpuUsage = this.#fail("cpu", "no usable value");
      return;
    }
    const previous = this.#cpuCounters;
    this.#cpuCounters = current;
    this.#cpuUsage = cpuUsage(previous, current);
  }

  #fail(source: string, error: unknown): null {
    if (!this.#reported.has(source)) {
      this.#reported.add(source);
      this.#logger?.debug(`Cannot read ${source}; reporting null`, {
        source,
        error: errorMessage(error),
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
    const boot_time = this.#try("boot_time", () => {
      const up = sys.osUptime();
      if (!Number.isFinite(up) || up < 0) return null;
      const at = Math.floor((this.#nowMs() - up * 1000) / 1000) * 1000;
      return new Date(at).toISOString().replace(".000Z", "Z");
    });
    const [release, machine_id, platform, time_zone] = await Promise.all([
      this.#tryAsync("os_name", () => this.#osNameVersion(os_release)),
      this.#tryAsync("machine_id", () => this.#machineId()),
      this.#platformFacts(),
      this.#tryAsync("time_zone", () => this.#timeZone()),
    ]);
    // Linux: /proc/cpuinfo (read by head) only, so node:os never loads there; elsewhere os.cpus().
    const cpuinfo = platform.cpuinfo === null ? null : parseCpuinfo(platform.cpuinfo);
    const firstCore = sys.os === "linux"
      ? null
      : await this.#tryAsync("cpu_model", async () => (await sys.cpus?.())?.[0] ?? null);
    const cpu_model = cpuinfo?.model ?? identityValue(firstCore?.model);
    const speed = firstCore?.speed;
    const cpu_mhz = cpuinfo?.mhz ??
      (speed !== undefined && Number.isInteger(speed) && speed > 0 ? speed : null);
    const hardware = platform.hardware;
    // A failed source already said why; a source that ran but lacked a value says so per field.
    if (!platform.failed) {
      for (const [field, value] of Object.entries(hardware)) {
        if (value === null) this.#fail(`hardware_${field}`, "no usable value");
      }
    }
    if (cpu_mhz === null) this.#fail("cpu_mhz", "no usable value");
    const virtualization = detectVirtualization({
      containerMarker: platform.containerMarker,
      cgroup: platform.cgroup,
      hardware,
      cpuinfo: platform.cpuinfo,
    });
    if (virtualization === null && !platform.failed) {
      this.#fail("virtualization", "no evidence readable");
    }
    return {
      os_release,
      os_name: release?.name ?? null,
      os_version: release?.version ?? null,
      machine_id,
      cpu_count,
      cpu_model,
      cpu_mhz,
      hardware,
      boot_time,
      time_zone,
      virtualization,
    };
  }

  /** Hardware identity and virtualization evidence; every part null when unreadable. */
  async #platformFacts(): Promise<PlatformFacts> {
    const sys = this.#system;
    const facts: PlatformFacts = {
      hardware: NO_HARDWARE,
      cpuinfo: null,
      cgroup: null,
      containerMarker: null,
      failed: false,
    };
    try {
      switch (sys.os) {
        case "linux": {
          for (const [path, technology] of CONTAINER_MARKERS) {
            const present = await sys.readTextFile(path).then(() => true, () => false);
            if (present) {
              facts.containerMarker = technology;
              break;
            }
          }
          // One process for all files; an unreadable one (no DMI in containers, the serial to
          // non-root) only lacks its section.
          const sections = parseHeadSections(
            await sys.runCommand(HEAD, [...LINUX_INVENTORY_ARGS], { anyExit: true }),
          );
          facts.hardware = {
            vendor: identityValue(sections.get(DMI_VENDOR)),
            model: identityValue(sections.get(DMI_PRODUCT)),
            serial: identityValue(sections.get(DMI_SERIAL)),
          };
          facts.cpuinfo = sections.get(PROC_CPUINFO) ?? null;
          facts.cgroup = sections.get(PROC_1_CGROUP) ?? null;
          break;
        }
        case "darwin":
          facts.hardware = parseIoregHardware(await this.#ioregPlatform());
          break;
        case "windows":
          facts.hardware = parseRegBios(await sys.runCommand(REG_EXE, ["query", BIOS_KEY]));
          break;
      }
    } catch (error) {
      this.#fail("hardware", error);
      facts.failed = true;
    }
    return facts;
  }

  /**
   * The system time zone: the IANA name the /etc/localtime link points at (Linux, macOS), else
   * Debian's /etc/timezone; on Windows the registry's zone key name ("W. Europe Standard Time").
   */
  async #timeZone(): Promise<string | null> {
    const sys = this.#system;
    if (sys.os === "windows") {
      return parseRegTimeZone(
        await sys.runCommand(REG_EXE, ["query", TIME_ZONE_KEY, "/v", "TimeZoneKeyName"]),
      );
    }
    const link = await sys.readLink?.(LOCALTIME).catch(() => null);
    const zone = link ? zoneFromLocaltimeLink(link) : null;
    if (zone !== null || sys.os !== "linux") return zone;
    return nonEmpty(await sys.readTextFile(DEBIAN_TIMEZONE));
  }

  /** `ioreg` output for the platform device, run once for the machine id and the hardware. */
  #ioregPlatform(): Promise<string> {
    this.#ioreg ??= this.#system.runCommand(IOREG, ["-rd1", "-c", "IOPlatformExpertDevice"]);
    return this.#ioreg;
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
            problems.push(errorMessage(error));
          }
        }
        throw new Error(problems.join("; "));
      }
      case "darwin":
        return parseIoregPlatformUuid(await this.#ioregPlatform());
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
        problems.push(errorMessage(error));
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
          swap_used_bytes: swapUsed(info),
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
          swap_used_bytes: swapUsed(info),
        };
    }
  }
}

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
