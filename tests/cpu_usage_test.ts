import { deepEqual, equal } from "node:assert/strict";
import { cpuUsage, sumCoreTimes } from "../src/cpu_usage.ts";

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
