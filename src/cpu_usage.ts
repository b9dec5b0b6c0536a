import * as z from "./zod.ts";

const percent = z.nullable(z.number().check(z.gte(0), z.lte(100)));

/**
 * CPU utilisation since the previous sample, in percent of all cores (one decimal). `iowait` and
 * `steal` are null where the source does not count them apart (see {@linkcode cpuUsage}).
 */
export const CpuUsageSchema = z.object({
  user: percent,
  system: percent,
  idle: percent,
  iowait: percent,
  steal: percent,
});
/** CPU utilisation over one interval. */
export type CpuUsage = z.infer<typeof CpuUsageSchema>;

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
  /** Cores counted, so a core going offline between samples is seen as a discontinuity. */
  cores: number;
}

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
  return cores.length === 0 ? null : { user, system, idle, cores: cores.length };
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/**
 * Utilisation between two counter samples, or null when there is no interval to speak of: no
 * previous sample, no time elapsed, a counter that went backwards (wrap, reset, a core that went
 * offline) or a changed core count. A wrong number is worse than none. `os.cpus()` does not count
 * iowait or steal apart from idle (and Deno refuses /proc/stat without --allow-all), so both
 * stay null; they exist in the schema for sources that have them.
 */
export function cpuUsage(previous: CpuCounters | null, current: CpuCounters): CpuUsage | null {
  if (previous === null || previous.cores !== current.cores) return null;
  const user = current.user - previous.user;
  const system = current.system - previous.system;
  const idle = current.idle - previous.idle;
  if (user < 0 || system < 0 || idle < 0) return null;
  const total = user + system + idle;
  if (total <= 0) return null;
  return {
    user: round1((100 * user) / total),
    system: round1((100 * system) / total),
    idle: round1((100 * idle) / total),
    iowait: null,
    steal: null,
  };
}
