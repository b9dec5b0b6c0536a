import assert from "node:assert/strict";
import {
  agentSchedule,
  fleetIntensity,
  type FleetSchedule,
  peakInSlidingWindow,
  seededRandom,
  simulateFleet,
  uniformPeakToMean,
  windowStats,
} from "../tasks/bench/fleet.ts";
import {
  parseCtxtSwitches,
  parseProcStat,
  parseProcStatus,
  switchIncrement,
} from "../tasks/bench/proc.ts";
import { allJudgedPass, formatMeasured, info, judged, renderTable } from "../tasks/bench/report.ts";
import { median, percentile, steadyMedian } from "../tasks/bench/stats.ts";
import { bodyBytes, FOUR_INTERFACE_HOST, heartbeatBodies } from "../tasks/bench/wire.ts";

const STATUS = `Name:\tdeno
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
VmPeak:\t 1234567 kB
VmHWM:\t   70312 kB
VmRSS:\t   69120 kB
RssAnon:\t   30000 kB
Threads:\t7
voluntary_ctxt_switches:\t1503
nonvoluntary_ctxt_switches:\t27
`;

Deno.test("bench parses VmRSS, VmHWM, threads and context switches from /proc status", () => {
  assert.deepEqual(parseProcStatus(STATUS), {
    vmRssKiB: 69120,
    vmHwmKiB: 70312,
    threads: 7,
    voluntaryCtxtSwitches: 1503,
    nonvoluntaryCtxtSwitches: 27,
  });
  assert.deepEqual(parseCtxtSwitches(STATUS), { voluntary: 1503, nonvoluntary: 27 });
});

Deno.test("bench rejects a /proc status without VmRSS or with a bad value", () => {
  assert.throws(() => parseProcStatus(STATUS.replace(/^VmRSS:.*$/m, "")), /no "VmRSS" field/);
  assert.throws(
    () => parseProcStatus(STATUS.replace("69120 kB", "lots")),
    /bad "VmRSS" value "lots"/,
  );
});

Deno.test("bench reads utime and stime from /proc stat even when the name has spaces and parens", () => {
  // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
  // utime stime ...
  const stat = "4242 (deno (main) x) S 1 4242 4242 0 -1 4194560 900 0 3 0 157 42 0 0 20 0 7 0";
  assert.deepEqual(parseProcStat(stat), { utimeTicks: 157, stimeTicks: 42 });
  assert.throws(() => parseProcStat("4242 deno S 1"), /no command name/);
  assert.throws(() => parseProcStat("4242 (deno) S 1 2"), /bad utime\/stime/);
});

Deno.test("bench counts wake-ups per thread so threads that exit do not make the sum go back", () => {
  const before = new Map([["1", 100], ["2", 50], ["3", 10]]);
  // Thread 3 exited, thread 4 was born with 5 switches, thread 1 did 20 more.
  const after = new Map([["1", 120], ["2", 50], ["4", 5]]);
  assert.equal(switchIncrement(before, after), 25);
  // The first sample is the baseline: nothing happened before it.
  assert.equal(switchIncrement(undefined, after), 0);
});

Deno.test("bench median, nearest-rank p95 and steady median", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 95), 95);
  assert.equal(percentile(hundred, 100), 100);
  assert.equal(percentile([7], 95), 7);
  assert.equal(
    percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], 95),
    19,
  );
  // Start-up samples (the first half) do not count.
  assert.equal(steadyMedian([90, 80, 70, 40, 41, 42]), 41);
  assert.throws(() => median([]), /empty sample/);
  assert.throws(() => percentile([1], 101), /expected 0\.\.100/);
  assert.throws(() => median([1, Number.NaN]), /non-finite/);
});

Deno.test("bench finds the peak of any 1-second window, not only aligned ones", () => {
  // 3 arrivals straddle the 1 s boundary: aligned bins would see at most 2.
  assert.equal(peakInSlidingWindow([100, 900, 1100, 1400, 5000]), 3);
  assert.equal(peakInSlidingWindow([0, 1000, 2000]), 1);
  assert.equal(peakInSlidingWindow([]), 0);
  const times = new Float64Array([0, 10, 20, 2000, 2500, 2600, 2700, 9000]);
  // Window [2000, 3000) holds 4 arrivals; 6 agents at 60 s give a mean of 0.1/s.
  const stats = windowStats(times, times.length, 1000, 9000, 0.1);
  assert.equal(stats.arrivals, 4);
  assert.equal(stats.peakPerSecond, 4);
  assert.ok(Math.abs(stats.peakToMean - 40) < 1e-9);
});

Deno.test("bench noise floor of uniform arrivals is above 1 and shrinks with more arrivals", () => {
  const few = uniformPeakToMean(600, 600, seededRandom(1));
  const many = uniformPeakToMean(600_000, 600, seededRandom(1));
  assert.ok(few > 2, `few: ${few}`);
  assert.ok(many > 1 && many < 1.2 && many < few / 2, `many: ${many}`);
});

const SMALL = {
  agents: 500,
  intervalSeconds: 60,
  steadySeconds: 300,
  outageSeconds: 300,
  recoverySeconds: 300,
  retryAfter: "none" as const,
  retryAfterSeconds: 30,
  seed: 7,
};

Deno.test("bench fleet simulation is deterministic for a seed and differs across seeds", () => {
  const a = simulateFleet(SMALL, agentSchedule);
  const b = simulateFleet(SMALL, agentSchedule);
  const c = simulateFleet({ ...SMALL, seed: 8 }, agentSchedule);
  assert.deepEqual(a.bins, b.bins);
  assert.deepEqual(a.recovery, b.recovery);
  assert.notDeepEqual(a.bins, c.bins);
  // Steady state: every agent once per interval (±10 % jitter), so ~agents/interval per second.
  assert.ok(Math.abs(a.steady.arrivals / SMALL.steadySeconds - SMALL.agents / 60) < 0.5);
  // Backoff from 1 s means several retries per agent during a 5-minute outage.
  assert.ok(a.outageAttemptsPerAgent > 3, `${a.outageAttemptsPerAgent}`);
  assert.ok(a.recoveredSeconds99 > 0 && a.recoveredSeconds99 <= 300);
});

Deno.test("bench fleet simulation exposes a herd: one Retry-After date for all vs spread", () => {
  // A schedule that obeys Retry-After to the second brings the whole fleet back at once.
  const exact: FleetSchedule = {
    name: "exact Retry-After",
    create: () => ({
      afterSuccess: () => 60,
      afterFailure: (retryAfter) => retryAfter ?? 1,
    }),
  };
  const scenario = { ...SMALL, retryAfter: "http-date" as const };
  const herd = simulateFleet(scenario, exact);
  assert.ok(herd.recovery.peakToMean > 50, `${herd.recovery.peakToMean}`);
  const { intensity } = fleetIntensity(scenario, agentSchedule, 2);
  assert.ok(intensity.recovery < herd.recovery.peakToMean / 10, `${intensity.recovery}`);
  assert.equal(intensity.runs, 2);
});

Deno.test("bench rejects a schedule that returns a negative wait", () => {
  const broken: FleetSchedule = {
    name: "broken",
    create: () => ({ afterSuccess: () => -1, afterFailure: () => 1 }),
  };
  assert.throws(() => simulateFleet(SMALL, broken), /invalid wait "-1"/);
});

Deno.test("bench bodies of the synthetic 4-interface host are what the loop builds", async () => {
  const [first, steady, third] = await heartbeatBodies(
    FOUR_INTERFACE_HOST,
    "agent-1",
    1_000_000,
    3,
  );
  assert.equal(first?.agent_id, "agent-1");
  assert.deepEqual([first, steady, third].map((b) => b?.sequence), [
    1_000_000,
    1_000_001,
    1_000_002,
  ]);
  // First beat of a process: the full host; then (host unchanged, acknowledged) its digest only.
  assert.equal(new Set(first?.host?.network_interfaces?.map((n) => n.name)).size, 4);
  assert.equal(first?.host?.network_interfaces?.length, 8);
  assert.ok(
    steady !== undefined && !("host" in steady) && third !== undefined && !("host" in third),
  );
  assert.equal(steady.host_digest, first?.host_digest);
  assert.ok(bodyBytes(steady) < bodyBytes(first) - bodyBytes(first?.host) + 10);
  assert.equal(bodyBytes(first), new TextEncoder().encode(JSON.stringify(first)).length);
  assert.equal(bodyBytes({ s: "é" }), 10);
});

Deno.test("bench table marks pass, FAIL and informational rows", () => {
  const rows = [
    judged(
      { id: "a", figure: "ratio", measured: 1.1, unit: "×", target: "≤ 1.15 ×" },
      (v) => v <= 1.15,
    ),
    judged(
      { id: "b", figure: "bytes", measured: 1500, unit: "B", target: "≤ 1,024 B" },
      (v) => v <= 1024,
    ),
    info({ id: "c", figure: "floor", measured: 43.25, unit: "MiB" }),
    judged(
      { id: "d", figure: "missing", measured: null, unit: "ms", target: "≤ 3 ms" },
      () => true,
    ),
  ];
  assert.deepEqual(rows.map((r) => r.pass), [true, false, null, null]);
  assert.equal(formatMeasured(rows[1]!), "1,500 B");
  const table = renderTable(rows);
  assert.match(table, /\| ratio +\| 1\.10× +\| ≤ 1\.15 × +\| pass +\|/);
  assert.match(table, /\| bytes .*\| FAIL +\|/);
  assert.match(table, /\| floor +\| 43\.3 MiB +\| info +\| — +\|/);
  assert.match(table, /\| missing .*\| n\/a .*\| FAIL \(not measured\) \|/);
  // An unmeasured judged figure is a failure, an informational one is not judged at all.
  assert.equal(allJudgedPass([rows[0]!, rows[2]!]), true);
  assert.equal(allJudgedPass([rows[0]!, rows[3]!]), false);
  assert.equal(
    allJudgedPass([rows[0]!, info({ id: "e", figure: "x", measured: null, unit: "" })]),
    true,
  );
});

Deno.test("bench-workarounds: every variant's edit finds its text exactly once in today's src", async () => {
  const { VARIANTS } = await import("../tasks/bench/workarounds.ts");
  assert.ok(VARIANTS.length >= 5);
  for (const variant of VARIANTS) {
    for (const edit of variant.edits) {
      const text = await Deno.readTextFile(new URL(`../${edit.file}`, import.meta.url));
      assert.equal(
        text.split(edit.from).length,
        2,
        `${variant.id}: "${edit.from}" must occur once in ${edit.file}`,
      );
    }
  }
});
