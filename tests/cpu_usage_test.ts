import { deepEqual, equal } from "node:assert/strict";
import { cpuUsage, parseProcStat, PROC_STAT, sumCoreTimes } from "../src/telemetry/cpu_usage.ts";
import { parseHeadSections } from "../src/telemetry/proc_reader.ts";
import { telemetryFixture as fixture } from "./_support/helpers.ts";

const core = (user: number, nice: number, sys: number, idle: number, irq: number) => ({
  times: { user, nice, sys, idle, irq },
});

Deno.test("cpu usage is the share of each counter's delta over all cores", () => {
  const before = sumCoreTimes([core(1000, 0, 500, 8000, 0), core(2000, 100, 400, 7000, 100)]);
  const after = sumCoreTimes([core(1600, 0, 700, 8200, 0), core(2300, 200, 500, 7500, 100)]);
  equal(before?.cores, 2);
  // user 600+300+100 = 1000, system 200+100 = 300, idle 200+500 = 700 of 2000 ms.
  deepEqual(cpuUsage(before, after!), {
    user: 50,
    system: 15,
    idle: 35,
    iowait: null,
    steal: null,
  });
});

Deno.test("cpu usage is null without an interval, on a wrap or a changed core count", () => {
  const a = sumCoreTimes([core(100, 0, 100, 100, 0)])!;
  equal(cpuUsage(null, a), null, "first sample");
  equal(cpuUsage(a, a), null, "no time elapsed");
  equal(cpuUsage(a, sumCoreTimes([core(50, 0, 200, 300, 0)])!), null, "user went backwards");
  equal(cpuUsage(a, sumCoreTimes([core(200, 0, 200, 50, 0)])!), null, "idle went backwards");
  const two = sumCoreTimes([core(200, 0, 200, 200, 0), core(1, 0, 1, 1, 0)])!;
  equal(cpuUsage(a, two), null, "a core came online");
});

Deno.test("cpu counters refuse non-finite or negative times and an empty core list", () => {
  equal(sumCoreTimes([]), null);
  equal(sumCoreTimes([core(1, 0, 1, Number.NaN, 0)]), null);
  equal(sumCoreTimes([core(1, -1, 1, 1, 0)]), null);
});

Deno.test("cpu percentages are rounded to one decimal and stay within 0..100", () => {
  const a = sumCoreTimes([core(0, 0, 0, 0, 0)])!;
  const b = sumCoreTimes([core(1, 0, 1, 1, 0)])!;
  deepEqual(cpuUsage(a, b), { user: 33.3, system: 33.3, idle: 33.3, iowait: null, steal: null });
});

/** The /proc/stat section of a recorded run of the network sampler's `head`. */
function recordedStat(name: string): string {
  const text = parseHeadSections(fixture(name)).get(PROC_STAT);
  if (text === undefined) throw new Error(`${name} has no ${PROC_STAT} section`);
  return text;
}

Deno.test("cpu usage from two recorded /proc/stat samples", () => {
  const before = parseProcStat(recordedStat("linux_head_stat_net_1.txt"));
  const after = parseProcStat(recordedStat("linux_head_stat_net_2.txt"));
  deepEqual(before, {
    user: 714796,
    system: 135986 + 1773,
    idle: 256382,
    iowait: 2496,
    steal: 606,
    cores: 2,
  });
  // Deltas: user 8, system 6, idle 384, iowait 0, steal 0 ticks of 398.
  deepEqual(cpuUsage(before, after!), { user: 2, system: 1.5, idle: 96.5, iowait: 0, steal: 0 });
});

Deno.test("/proc/stat: nice counts as user, irq and softirq as system, iowait and steal apart", () => {
  const stat = (n: number) =>
    `cpu  ${100 * n} ${10 * n} ${50 * n} ${700 * n} ${60 * n} ${5 * n} ${5 * n} ${70 * n} ${
      30 * n
    } 0\ncpu0 1 2 3 4 5 6 7 8 0 0\ncpu1 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\nctxt 5\n`;
  // Per interval: user 110, system 60, idle 700, iowait 60, steal 70 of 1000 (guest 30 is in user).
  deepEqual(cpuUsage(parseProcStat(stat(1)), parseProcStat(stat(2))!), {
    user: 11,
    system: 6,
    idle: 70,
    iowait: 6,
    steal: 7,
  });
});

Deno.test("/proc/stat: a counter going backwards or a short or garbled line gives null", () => {
  const a = parseProcStat("cpu  100 0 100 100 50 0 0 10 0 0\ncpu0 1\n")!;
  const iowaitBack = parseProcStat("cpu  200 0 200 200 40 0 0 10 0 0\ncpu0 1\n")!;
  equal(cpuUsage(a, iowaitBack), null, "iowait went backwards");
  const stealBack = parseProcStat("cpu  200 0 200 200 50 0 0 9 0 0\ncpu0 1\n")!;
  equal(cpuUsage(a, stealBack), null, "steal went backwards");
  equal(cpuUsage(a, parseProcStat("cpu  200 0 200 200 60 0 0 10 0 0\n")!), null, "cores changed");
  // A kernel without iowait and steal columns.
  const old = parseProcStat("cpu  1 0 1 2\n");
  deepEqual(old, { user: 1, system: 1, idle: 2, iowait: null, steal: null, cores: 0 });
  equal(parseProcStat("cpu  1 0 1\n"), null);
  equal(parseProcStat("cpu  1 0 x 2\n"), null);
  equal(parseProcStat("intr 1 2 3\n"), null);
  equal(parseProcStat("cpu0 1 2 3 4 5\n"), null, "only a per-core line");
});
