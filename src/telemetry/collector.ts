import { type CpuCounters, cpuUsage, parseProcStat, PROC_STAT, sumCoreTimes } from "./cpu_usage.ts";
import { FILESYSTEM_INTERVAL_MS, readFilesystems } from "./filesystems.ts";
import { HostInventory } from "./host_inventory.ts";
import {
  loadAverage,
  memory,
  parseLoadavgThreads,
  PROC_LOADAVG,
  uptimeSeconds,
} from "./metrics.ts";
import {
  type InterfaceCounters,
  MACOS_NETSTAT,
  MACOS_NETSTAT_ARGS,
  NETWORK_INTERVAL_MS,
  networkTraffic,
  parseNetstatIb,
  parseProcNetDev,
  PROC_NET_DEV,
} from "./network_counters.ts";
import { HEAD, readHeads } from "./proc_reader.ts";
import type {
  CpuUsage,
  Filesystem,
  Host,
  Metrics,
  NetworkTraffic,
} from "../wire/telemetry_wire.ts";
import type { Telemetry } from "./telemetry_schema.ts";
import { SourceFailures } from "./source_failures.ts";
import { denoSystem, type SystemSeam } from "./system.ts";
import type { Logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { isoTime } from "../iso_time.ts";

/**
 * One `head` for the network sampler's files: CPU counters, interface counters and the thread
 * count ride its minute. 4096 lines hold /proc/stat of a few hundred cores.
 */
const SAMPLER_HEAD_ARGS = ["-n", "4096", PROC_STAT, PROC_NET_DEV, PROC_LOADAVG] as const;

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

/** How long `inventory` and `diagnostics` watch CPU and network counters to report their rates. */
const SNAPSHOT_SAMPLE_MS = 1000;

/**
 * One full snapshot with rates, as `inventory` prints it: CPU and network figures are deltas, so
 * a baseline is taken, `sampleMs` pass, then {@linkcode TelemetryCollector.collect}.
 */
export async function sampledSnapshot(
  collector: TelemetryCollector,
  sampleMs = SNAPSHOT_SAMPLE_MS,
): Promise<Telemetry> {
  await collector.sampleMetrics(true);
  await new Promise((resolve) => setTimeout(resolve, sampleMs));
  await collector.refresh(true);
  return await collector.collect();
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
  readonly #now: () => Date;
  readonly #failures: SourceFailures;
  readonly #inventory: HostInventory;
  #cpuCounters: CpuCounters | null = null;
  #cpuUsage: CpuUsage | null = null;
  /** Linux only, from the network sampler's run; undefined until then and elsewhere. */
  #threads: number | null | undefined;
  readonly #filesystems = sampler<{ atMs: number; mounts: Filesystem[] }>(FILESYSTEM_INTERVAL_MS);
  readonly #network = sampler<NetworkTraffic>(NETWORK_INTERVAL_MS);
  #netCounters: { atMs: number; counters: Map<string, InterfaceCounters> } | null = null;

  constructor(options: TelemetryCollectorOptions = {}) {
    this.#system = options.system ?? denoSystem;
    this.#now = options.now ?? (() => new Date());
    this.#failures = new SourceFailures(options.logger);
    this.#inventory = new HostInventory(this.#system, this.#failures, () => this.#nowMs());
  }

  /** Host inventory: static facts from the cache, hostname and addresses read fresh. */
  host(): Promise<Host> {
    return this.#inventory.host();
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
    const os = this.#system.os;
    const now = this.#nowMs();
    const due = (s: Sampler<unknown>) => force || s.atMs === null || now - s.atMs >= s.intervalMs;
    const runs: Promise<void>[] = [];
    if (os !== "linux") runs.push(this.#sampleCpuTimes());
    if ((os === "linux" || os === "darwin") && due(this.#filesystems)) {
      runs.push(this.#run(this.#filesystems, "filesystems", async () => {
        const mounts = await readFilesystems(this.#system);
        return { atMs: this.#nowMs(), mounts };
      }));
    }
    // The first network run is only a baseline: the second comes with the next heartbeat, so
    // traffic figures (and Linux CPU figures) appear from the second heartbeat on, then at most
    // once a minute.
    if ((os === "linux" || os === "darwin") && (due(this.#network) || this.#network.runs === 1)) {
      runs.push(this.#run(this.#network, "network", async () => {
        const counters = os === "linux"
          ? await this.#readLinuxCounters()
          : parseNetstatIb(await this.#system.runCommand(MACOS_NETSTAT, [...MACOS_NETSTAT_ARGS]));
        const sample = { atMs: this.#nowMs(), counters };
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

  /**
   * One `head` for the network counters, the CPU counters and the thread count, which thus ride
   * the network sampler's minute.
   */
  async #readLinuxCounters(): Promise<Map<string, InterfaceCounters>> {
    let sections: Map<string, string>;
    try {
      sections = await readHeads(this.#system, SAMPLER_HEAD_ARGS);
    } catch (error) {
      this.#cpuUsage = this.#failures.fail("cpu", error);
      throw error;
    }
    const loadavg = sections.get(PROC_LOADAVG);
    this.#threads = loadavg === undefined ? null : parseLoadavgThreads(loadavg);
    if (this.#threads === null) this.#failures.fail("threads", `${HEAD} printed no count`);
    const stat = sections.get(PROC_STAT);
    this.#takeCpuCounters(stat === undefined ? null : parseProcStat(stat));
    const text = sections.get(PROC_NET_DEV);
    if (text === undefined) throw new Error(`${HEAD} printed no ${PROC_NET_DEV}`);
    return parseProcNetDev(text);
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
        this.#failures.fail(source, error);
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
    const metrics: Metrics = {
      uptime_seconds: this.#failures.try("uptime_seconds", () => uptimeSeconds(sys)),
      load_average: this.#failures.try("load_average", () => loadAverage(sys)),
      memory: this.#failures.try("memory", () => memory(sys)),
      cpu: this.#cpuUsage,
    };
    if (this.#threads !== undefined) metrics.threads = this.#threads;
    return metrics;
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
      collected_at: isoTime(this.#now().getTime()),
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
      this.#cpuUsage = this.#failures.fail("cpu", error);
    }
  }

  /** Utilisation since the previous sample; null on the first (an expected null: no debug line). */
  #takeCpuCounters(current: CpuCounters | null): void {
    if (current === null) {
      this.#cpuUsage = this.#failures.fail("cpu", "no usable value");
      return;
    }
    const previous = this.#cpuCounters;
    this.#cpuCounters = current;
    this.#cpuUsage = cpuUsage(previous, current);
  }
}
