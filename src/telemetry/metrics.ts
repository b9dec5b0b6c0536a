/** The metrics Deno measures in-process (no child process): uptime, load, memory and swap. */
import type { Metrics } from "../wire/telemetry_wire.ts";
import type { SystemSeam } from "./system.ts";

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

/** Seconds since boot, whole. */
export function uptimeSeconds(system: SystemSeam): number | null {
  const up = system.osUptime();
  return Number.isFinite(up) && up >= 0 ? Math.floor(up) : null;
}

/** Load averages over 1, 5 and 15 minutes, two decimals; null where the OS has none. */
export function loadAverage(system: SystemSeam): [number, number, number] | null {
  const avg = system.loadavg();
  const [one, five, fifteen] = avg;
  if (
    avg.length !== 3 || one === undefined || five === undefined || fifteen === undefined ||
    ![one, five, fifteen].every((v) => Number.isFinite(v) && v >= 0)
  ) {
    return null;
  }
  // Windows has no load average; Deno reports zeros there, which would read as an idle host.
  if (system.os === "windows" && one === 0 && five === 0 && fifteen === 0) return null;
  const round = (v: number) => Math.round(v * 100) / 100;
  return [round(one), round(five), round(fifteen)];
}

/** Memory and swap in bytes; figures the OS does not measure are null. */
export function memory(sys: SystemSeam): Metrics["memory"] {
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

/** Linux load averages and, in its fourth field, `runnable/existing` kernel scheduling entities. */
export const PROC_LOADAVG = "/proc/loadavg";

/**
 * The number of threads on the host (kernel scheduling entities: every process has at least one)
 * from `/proc/loadavg`'s fourth field `running/total`. Counting processes instead would need a
 * listing of /proc, which Deno refuses to `--allow-read`.
 */
export function parseLoadavgThreads(text: string): number | null {
  const m = /^\S+ \S+ \S+ \d+\/(\d+) \d+/.exec(text.trim());
  const n = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}
