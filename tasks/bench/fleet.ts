/**
 * Fleet simulation: thousands of agents on a fake clock, each deciding its next attempt with the
 * agent's own schedule code, against a platform that goes down and comes back. Measures how evenly
 * the fleet's requests land on the platform (peak arrivals in a 1-second window / mean rate).
 */
import { parseRetryAfter } from "../../src/platform/backoff.ts";
import { HeartbeatSchedule } from "../../src/heartbeat/schedule.ts";

/** How the platform answers during the outage. */
export type RetryAfterVariant = "none" | "seconds" | "http-date";

/** One simulated agent's decisions, in seconds from the attempt that just ended. */
export interface FleetAgent {
  /** Wait after a successful heartbeat. */
  afterSuccess(): number;
  /** Wait after a failed one, given the Retry-After the client parsed (seconds), if any. */
  afterFailure(retryAfterSeconds?: number): number;
}

/** Makes the decision code of one agent of the fleet. */
export interface FleetSchedule {
  /** Where the decision code comes from. */
  readonly name: string;
  create(intervalSeconds: number, random: () => number): FleetAgent;
}

/** The agent's own schedule: `HeartbeatSchedule` from src/heartbeat/schedule.ts, one per simulated agent. */
export const agentSchedule: FleetSchedule = {
  name: "src/heartbeat/schedule.ts HeartbeatSchedule",
  create: (intervalSeconds, random) =>
    // The interval comes from enrollment, as it does for a real fleet.
    new HeartbeatSchedule({ enrollmentIntervalSeconds: intervalSeconds, random }),
};

/** A scenario: steady state, then an outage, then recovery. */
export interface FleetScenario {
  agents: number;
  intervalSeconds: number;
  steadySeconds: number;
  outageSeconds: number;
  recoverySeconds: number;
  retryAfter: RetryAfterVariant;
  /** Delta-seconds value for the "seconds" variant. */
  retryAfterSeconds: number;
  seed: number;
}

/** Arrival statistics of one window. */
export interface WindowStats {
  fromSeconds: number;
  toSeconds: number;
  arrivals: number;
  /** Peak arrivals in any 1-second window (sliding, not aligned to bins). */
  peakPerSecond: number;
  /** peakPerSecond / (agents / interval): 1.0 is a perfectly even fleet. */
  peakToMean: number;
}

/** Result of one simulation. */
export interface FleetResult {
  scenario: FleetScenario;
  schedule: string;
  meanPerSecond: number;
  steady: WindowStats;
  outage: WindowStats;
  recovery: WindowStats;
  /** The same statistic for independent uniformly random arrivals at the mean rate over the
   * recovery window: the sampling-noise floor no schedule can beat on average. */
  uniformFloorPeakToMean: number;
  /** Attempts per agent during the outage (retry pressure). */
  outageAttemptsPerAgent: number;
  /** Seconds from recovery until 99 % of agents have succeeded again. */
  recoveredSeconds99: number;
  /** Arrivals per aligned 1-second bin over the whole run. */
  bins: Uint32Array;
}

/** Deterministic PRNG (mulberry32), so the same seed gives the same fleet. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Peak number of sorted `timesMs` in any half-open window [t, t + widthMs) that starts at an
 * arrival (the maximum over all windows is always attained at one).
 */
export function peakInSlidingWindow(timesMs: ArrayLike<number>, widthMs = 1000): number {
  let peak = 0;
  let j = 0;
  for (let i = 0; i < timesMs.length; i++) {
    if (j < i) j = i;
    while (j < timesMs.length && timesMs[j]! < timesMs[i]! + widthMs) j++;
    peak = Math.max(peak, j - i);
  }
  return peak;
}

/** Peak-to-mean of arrivals (sorted, ms) in [fromMs, toMs) against `meanPerSecond`. */
export function windowStats(
  timesMs: Float64Array,
  count: number,
  fromMs: number,
  toMs: number,
  meanPerSecond: number,
): WindowStats {
  const lo = lowerBound(timesMs, count, fromMs);
  const hi = lowerBound(timesMs, count, toMs);
  const peak = peakInSlidingWindow(timesMs.subarray(lo, hi));
  return {
    fromSeconds: fromMs / 1000,
    toSeconds: toMs / 1000,
    arrivals: hi - lo,
    peakPerSecond: peak,
    peakToMean: peak / meanPerSecond,
  };
}

function lowerBound(a: Float64Array, count: number, value: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Peak-to-mean of `arrivals` independent uniform arrivals over `seconds` (the noise floor). */
export function uniformPeakToMean(
  arrivals: number,
  seconds: number,
  random: () => number,
): number {
  const times = new Float64Array(arrivals);
  for (let i = 0; i < arrivals; i++) times[i] = random() * seconds * 1000;
  times.sort();
  return peakInSlidingWindow(times) / (arrivals / seconds);
}

const WARMUP_INTERVALS = 10;
// Duration of one attempt in the simulation: a loopback-fast round trip.
const ATTEMPT_MS = 1;

// Wall clock of the simulation's t = 0, for HTTP-date Retry-After values (whole seconds).
const EPOCH_MS = Date.UTC(2025, 0, 6, 9, 0, 0);

/**
 * Runs one scenario. Every agent has exactly one pending attempt, kept in a binary min-heap on
 * time, so the run is O(attempts · log agents) and deterministic for a given seed.
 */
export function simulateFleet(scenario: FleetScenario, schedule: FleetSchedule): FleetResult {
  const { agents, intervalSeconds } = scenario;
  const random = seededRandom(scenario.seed);
  // Arrivals before t = 0 are a warm-up that is not recorded: ten intervals let the ±jitter
  // wash out the start-up transient, so t = 0 is a fleet already in steady state.
  const warmupMs = WARMUP_INTERVALS * intervalSeconds * 1000;
  const outageStartMs = scenario.steadySeconds * 1000;
  const outageEndMs = outageStartMs + scenario.outageSeconds * 1000;
  const endMs = outageEndMs + scenario.recoverySeconds * 1000;
  const retryAfterHeader = (): string | null => {
    switch (scenario.retryAfter) {
      case "none":
        return null;
      case "seconds":
        return String(scenario.retryAfterSeconds);
      case "http-date":
        // A maintenance page that names its end: the same instant for every agent.
        return new Date(EPOCH_MS + outageEndMs).toUTCString();
    }
  };

  const heapTime = new Float64Array(agents);
  const heapAgent = new Int32Array(agents);
  const fleet: FleetAgent[] = [];
  const recovered = new Uint8Array(agents);
  // Agents started at random phases over one interval; the first heartbeat is right at start.
  for (let i = 0; i < agents; i++) {
    fleet.push(schedule.create(intervalSeconds, random));
    heapTime[i] = random() * intervalSeconds * 1000 - warmupMs;
    heapAgent[i] = i;
  }
  for (let i = (agents >> 1) - 1; i >= 0; i--) siftDown(heapTime, heapAgent, agents, i);

  const bins = new Uint32Array(Math.ceil(endMs / 1000));
  let times = new Float64Array(agents * 64);
  let count = 0;
  let outageAttempts = 0;
  let recoveredCount = 0;
  let recovered99Ms = Number.NaN;
  const target99 = Math.ceil(agents * 0.99);
  while (heapTime[0]! < endMs) {
    const t = heapTime[0]!;
    const agent = heapAgent[0]!;
    if (t >= 0) {
      if (count === times.length) {
        const grown = new Float64Array(times.length * 2);
        grown.set(times);
        times = grown;
      }
      times[count++] = t;
      bins[Math.floor(t / 1000)]!++;
    }
    let waitSeconds: number;
    if (t >= outageStartMs && t < outageEndMs) {
      outageAttempts++;
      // The platform client parses Retry-After against the wall clock, as parseRetryAfter does.
      const retryAfter = parseRetryAfter(retryAfterHeader(), EPOCH_MS + t);
      waitSeconds = fleet[agent]!.afterFailure(retryAfter);
    } else {
      waitSeconds = fleet[agent]!.afterSuccess();
      if (t >= outageEndMs && recovered[agent] === 0) {
        recovered[agent] = 1;
        if (++recoveredCount === target99) recovered99Ms = t - outageEndMs;
      }
    }
    if (!(waitSeconds >= 0) || !Number.isFinite(waitSeconds)) {
      throw new Error(`Schedule "${schedule.name}" returned an invalid wait "${waitSeconds}"`);
    }
    // An attempt takes time of its own (at least a round trip): without that floor a schedule
    // answering 0 at the end of an outage would never let the fake clock move.
    heapTime[0] = t + Math.max(waitSeconds * 1000, ATTEMPT_MS);
    siftDown(heapTime, heapAgent, agents, 0);
  }

  const meanPerSecond = agents / intervalSeconds;
  const recovery = windowStats(times, count, outageEndMs, endMs, meanPerSecond);
  return {
    scenario,
    schedule: schedule.name,
    meanPerSecond,
    steady: windowStats(times, count, 0, outageStartMs, meanPerSecond),
    outage: windowStats(times, count, outageStartMs, outageEndMs, meanPerSecond),
    recovery,
    uniformFloorPeakToMean: uniformPeakToMean(
      Math.round(meanPerSecond * scenario.recoverySeconds),
      scenario.recoverySeconds,
      seededRandom(scenario.seed ^ 0x5eed),
    ),
    outageAttemptsPerAgent: outageAttempts / agents,
    recoveredSeconds99: recovered99Ms / 1000,
    bins,
  };
}

function siftDown(time: Float64Array, agent: Int32Array, size: number, start: number): void {
  let i = start;
  const t = time[i]!;
  const a = agent[i]!;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && time[child + 1]! < time[child]!) child++;
    if (time[child]! >= t) break;
    time[i] = time[child]!;
    agent[i] = agent[child]!;
    i = child;
  }
  time[i] = t;
  agent[i] = a;
}

/** Peak-to-mean of the fleet's expected arrival rate, estimated over several seeds. */
export interface FleetIntensity {
  runs: number;
  /** Peak of the 1-second bins averaged over the runs, / mean rate, per window. */
  steady: number;
  outage: number;
  recovery: number;
  /** The same estimator for independent uniform arrivals: what sampling noise alone gives. */
  uniformFloor: number;
}

/**
 * Averages the aligned 1-second arrival histogram over `runs` seeds. A single fleet of 10,000
 * agents at 60 s has ~167 arrivals per second, so Poisson noise alone puts the peak second
 * ~30 % above the mean; averaging isolates what the schedule itself does (synchronisation).
 */
export function fleetIntensity(
  scenario: FleetScenario,
  schedule: FleetSchedule,
  runs: number,
): { intensity: FleetIntensity; first: FleetResult } {
  let first: FleetResult | undefined;
  let sum: Float64Array | undefined;
  for (let r = 0; r < runs; r++) {
    const result = simulateFleet({ ...scenario, seed: scenario.seed + r }, schedule);
    first ??= result;
    sum ??= new Float64Array(result.bins.length);
    for (let i = 0; i < result.bins.length; i++) sum[i]! += result.bins[i]!;
  }
  if (first === undefined || sum === undefined) throw new RangeError("Cannot simulate 0 runs");
  const mean = (scenario.agents / scenario.intervalSeconds) * runs;
  const peak = (from: number, to: number) => {
    let p = 0;
    for (let i = from; i < to; i++) p = Math.max(p, sum[i]!);
    return p / mean;
  };
  const outageStart = scenario.steadySeconds;
  const outageEnd = outageStart + scenario.outageSeconds;
  // Noise floor: the same number of uniform arrivals binned the same way.
  const random = seededRandom(scenario.seed ^ 0xf100);
  const floorBins = new Float64Array(scenario.recoverySeconds);
  const floorArrivals = Math.round(mean * scenario.recoverySeconds);
  for (let i = 0; i < floorArrivals; i++) {
    floorBins[Math.floor(random() * scenario.recoverySeconds)]!++;
  }
  return {
    first,
    intensity: {
      runs,
      steady: peak(0, outageStart),
      outage: peak(outageStart, outageEnd),
      recovery: peak(outageEnd, sum.length),
      uniformFloor: Math.max(...floorBins) / mean,
    },
  };
}

/** One case of the bench's fleet suite. */
export interface FleetCase {
  id: string;
  label: string;
  retryAfter: RetryAfterVariant;
  outageSeconds: number;
  schedule: FleetSchedule;
  /** Part of the scenario (10-minute outage, the agent's own code), so judged. */
  judged: boolean;
}

/** One case's figures. */
export interface FleetCaseResult {
  id: string;
  label: string;
  schedule: string;
  judged: boolean;
  intensity: FleetIntensity;
  /** Peak-to-mean of the first run alone (one real fleet, sampling noise included). */
  singleRun: { steady: number; outage: number; recovery: number; uniformFloor: number };
  outageAttemptsPerAgent: number;
  recoveredSeconds99: number;
}

/** The bench's cases: the 10-minute outage three ways, and a 2-minute one. */
export function fleetCases(): FleetCase[] {
  return [
    {
      id: "outage_503",
      label: "10-min outage, 503 without Retry-After",
      retryAfter: "none",
      outageSeconds: 600,
      schedule: agentSchedule,
      judged: true,
    },
    {
      id: "outage_503_retry_after_30",
      label: "10-min outage, 503 Retry-After: 30",
      retryAfter: "seconds",
      outageSeconds: 600,
      schedule: agentSchedule,
      judged: true,
    },
    {
      id: "outage_503_retry_after_date",
      label: "10-min outage, 503 Retry-After: <HTTP-date of the end>",
      retryAfter: "http-date",
      outageSeconds: 600,
      schedule: agentSchedule,
      judged: true,
    },
    {
      id: "short_outage_retry_after_date",
      label: "2-min outage, 503 Retry-After: <HTTP-date of the end>",
      retryAfter: "http-date",
      outageSeconds: 120,
      schedule: agentSchedule,
      judged: true,
    },
  ];
}

/** Runs every case with `agents` agents at `intervalSeconds`, `runs` seeds each. */
export function runFleetSuite(
  options: { agents: number; intervalSeconds: number; runs: number; seed: number },
): FleetCaseResult[] {
  return fleetCases().map((c) => {
    const { intensity, first } = fleetIntensity(
      {
        agents: options.agents,
        intervalSeconds: options.intervalSeconds,
        steadySeconds: 600,
        outageSeconds: c.outageSeconds,
        recoverySeconds: 900,
        retryAfter: c.retryAfter,
        retryAfterSeconds: 30,
        seed: options.seed,
      },
      c.schedule,
      options.runs,
    );
    return {
      id: c.id,
      label: c.label,
      schedule: c.schedule.name,
      judged: c.judged,
      intensity,
      singleRun: {
        steady: first.steady.peakToMean,
        outage: first.outage.peakToMean,
        recovery: first.recovery.peakToMean,
        uniformFloor: first.uniformFloorPeakToMean,
      },
      outageAttemptsPerAgent: first.outageAttemptsPerAgent,
      recoveredSeconds99: first.recoveredSeconds99,
    };
  });
}
