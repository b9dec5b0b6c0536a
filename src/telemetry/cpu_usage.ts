import type { CpuUsage } from "../wire/telemetry_wire.ts";

/** Cumulative CPU times of one core as `node:os` `cpus()` reports them (milliseconds). */
export interface CoreTimes {
  user: number;
  nice: number;
  sys: number;
  idle: number;
  irq: number;
}

/** Cumulative times summed over all cores, the state kept between two samples. */
export interface CpuCounters {
  user: number;
  system: number;
  idle: number;
  /** Null where the source does not count it apart from idle (`node:os` `cpus()`). */
  iowait: number | null;
  /** Null where the source does not count it apart (`node:os` `cpus()`). */
  steal: number | null;
  /** Cores counted, so a core going offline between samples is seen as a discontinuity. */
  cores: number;
}

/** Linux CPU counters (read through `head`: Deno refuses /proc to --allow-read). */
export const PROC_STAT = "/proc/stat";

/** Sums per-core times (`nice` counts as user time, `irq` as system time, as `top` does). */
export function sumCoreTimes(cores: readonly { times: CoreTimes }[]): CpuCounters | null {
  let user = 0, system = 0, idle = 0;
  for (const { times: t } of cores) {
    const parts = [t.user, t.nice, t.sys, t.idle, t.irq];
    if (!parts.every((v) => Number.isFinite(v) && v >= 0)) return null;
    user += t.user + t.nice;
    system += t.sys + t.irq;
    idle += t.idle;
  }
  return cores.length === 0
    ? null
    : { user, system, idle, iowait: null, steal: null, cores: cores.length };
}

/**
 * Parses Linux `/proc/stat`: the aggregate `cpu` line (user, nice, system, idle, iowait, irq,
 * softirq, steal, in clock ticks; guest time is already inside user) and the number of `cpuN`
 * lines. Nice counts as user, irq and softirq as system. Kernels that lack the later columns give
 * null iowait/steal; a line with fewer than four counters gives null.
 */
export function parseProcStat(text: string): CpuCounters | null {
  const line = /^cpu[ \t]+([^\n]*)$/m.exec(text)?.[1];
  if (line === undefined) return null;
  const f = line.trim().split(/\s+/).map(Number);
  if (f.length < 4 || !f.every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  const at = (i: number) => f[i] ?? 0;
  return {
    user: at(0) + at(1),
    system: at(2) + at(5) + at(6),
    idle: at(3),
    iowait: f[4] ?? null,
    steal: f[7] ?? null,
    cores: text.match(/^cpu\d+\s/gm)?.length ?? 0,
  };
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/**
 * Utilisation between two counter samples, or null when there is no interval to speak of: no
 * previous sample, no time elapsed, a counter that went backwards (wrap, reset, a core that went
 * offline) or a changed core count. A wrong number is worse than none. iowait and steal are null
 * where the source does not count them apart from idle (`os.cpus()`: macOS, Windows).
 */
export function cpuUsage(previous: CpuCounters | null, current: CpuCounters): CpuUsage | null {
  if (previous === null || previous.cores !== current.cores) return null;
  const delta = (a: number | null, b: number | null) => a === null || b === null ? null : b - a;
  const user = current.user - previous.user;
  const system = current.system - previous.system;
  const idle = current.idle - previous.idle;
  const iowait = delta(previous.iowait, current.iowait);
  const steal = delta(previous.steal, current.steal);
  if ([user, system, idle, iowait ?? 0, steal ?? 0].some((d) => d < 0)) return null;
  const total = user + system + idle + (iowait ?? 0) + (steal ?? 0);
  if (total <= 0) return null;
  const percent = (v: number | null) => v === null ? null : round1((100 * v) / total);
  return {
    user: percent(user),
    system: percent(system),
    idle: percent(idle),
    iowait: percent(iowait),
    steal: percent(steal),
  };
}
