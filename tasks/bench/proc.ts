/** Linux /proc readers for sampling a process's memory, CPU time and wake-ups. */

/** Fields of `/proc/<pid>/status` the bench uses; sizes in KiB. */
export interface ProcStatus {
  vmRssKiB: number;
  vmHwmKiB: number;
  threads: number;
  voluntaryCtxtSwitches: number;
  nonvoluntaryCtxtSwitches: number;
}

/** Parses `/proc/<pid>/status` (or `/proc/<pid>/task/<tid>/status`). */
export function parseProcStatus(text: string): ProcStatus {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const int = (name: string, unit?: "kB"): number => {
    const raw = fields.get(name);
    if (raw === undefined) throw new Error(`Cannot parse /proc status: no "${name}" field`);
    const m = unit ? /^(\d+)\s+kB$/.exec(raw) : /^(\d+)$/.exec(raw);
    if (!m) throw new Error(`Cannot parse /proc status: bad "${name}" value "${raw}"`);
    return Number(m[1]);
  };
  return {
    vmRssKiB: int("VmRSS", "kB"),
    vmHwmKiB: int("VmHWM", "kB"),
    threads: int("Threads"),
    voluntaryCtxtSwitches: int("voluntary_ctxt_switches"),
    nonvoluntaryCtxtSwitches: int("nonvoluntary_ctxt_switches"),
  };
}

/** Context switches of one thread, from `/proc/<pid>/task/<tid>/status`. */
export function parseCtxtSwitches(text: string): { voluntary: number; nonvoluntary: number } {
  const get = (name: string): number => {
    const m = new RegExp(`^${name}:\\s*(\\d+)\\s*$`, "m").exec(text);
    if (!m) throw new Error(`Cannot parse /proc status: no "${name}" field`);
    return Number(m[1]);
  };
  return {
    voluntary: get("voluntary_ctxt_switches"),
    nonvoluntary: get("nonvoluntary_ctxt_switches"),
  };
}

/** CPU time of a process in clock ticks, from `/proc/<pid>/stat`. */
export interface ProcStat {
  utimeTicks: number;
  stimeTicks: number;
}

/**
 * Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
 * spaces and parentheses, so fields are counted from the LAST `)`: utime and stime are fields 14
 * and 15 of proc(5).
 */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(")");
  if (close < 0) throw new Error("Cannot parse /proc stat: no command name");
  // After ")" come field 3 (state) onwards; utime is field 14, i.e. index 11 here.
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isSafeInteger(utime) || !Number.isSafeInteger(stime) || utime < 0 || stime < 0) {
    throw new Error(`Cannot parse /proc stat: bad utime/stime "${rest[11]}" "${rest[12]}"`);
  }
  return { utimeTicks: utime, stimeTicks: stime };
}

/** Clock ticks per second (`getconf CLK_TCK`), which /proc stat times are counted in. */
export async function clockTicksPerSecond(): Promise<number> {
  const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim());
  if (!out.success || !Number.isSafeInteger(n) || n <= 0) {
    throw new Error("Cannot read CLK_TCK: `getconf CLK_TCK` failed");
  }
  return n;
}

/** One sample of a process. */
export interface ProcSample {
  /** Wall clock (Date.now) of the sample. */
  wallMs: number;
  rssKiB: number;
  hwmKiB: number;
  threads: number;
  cpuTicks: number;
  /**
   * Voluntary context switches (sleeps, i.e. wake-ups) of all threads of the process, cumulative.
   * Filled by {@linkcode ProcSampler}: threads come and go, so it sums per-thread increments.
   */
  voluntaryCtxtSwitches: number;
  /** Current voluntary switch count of each live thread, by thread id. */
  threadSwitches: Map<string, number>;
}

/** Reads one sample of `pid`; null once the process is gone. */
export async function readProcSample(pid: number): Promise<ProcSample | null> {
  try {
    const [statusText, statText] = await Promise.all([
      Deno.readTextFile(`/proc/${pid}/status`),
      Deno.readTextFile(`/proc/${pid}/stat`),
    ]);
    const status = parseProcStatus(statusText);
    const stat = parseProcStat(statText);
    // The process-level status counts only the main thread's switches; wake-ups of the runtime's
    // worker threads count as much, so read every task.
    const threadSwitches = new Map<string, number>();
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      try {
        const text = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/status`);
        threadSwitches.set(task.name, parseCtxtSwitches(text).voluntary);
      } catch (error) {
        // A thread that exits between readDir and read is simply no longer counted.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    return {
      wallMs: Date.now(),
      rssKiB: status.vmRssKiB,
      hwmKiB: status.vmHwmKiB,
      threads: status.threads,
      cpuTicks: stat.utimeTicks + stat.stimeTicks,
      voluntaryCtxtSwitches: 0,
      threadSwitches,
    };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Voluntary switches that happened between two samples: per thread, the increase since the last
 * sample (a thread born since then counts from zero; one that died takes its last few with it).
 */
export function switchIncrement(
  before: Map<string, number> | undefined,
  after: Map<string, number>,
): number {
  let sum = 0;
  for (const [tid, count] of after) {
    const was = before?.get(tid);
    sum += was === undefined ? (before === undefined ? 0 : count) : Math.max(0, count - was);
  }
  return sum;
}

/** Samples a process every `periodMs` until stopped or the process exits. */
export class ProcSampler {
  readonly samples: ProcSample[] = [];
  readonly #pid: number;
  readonly #periodMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #busy = false;

  constructor(pid: number, periodMs: number) {
    this.#pid = pid;
    this.#periodMs = periodMs;
  }

  /** Takes a first sample now and then one every period. */
  start(): void {
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), this.#periodMs);
  }

  /** Takes one sample now (skipped if the previous read is still running). */
  async sample(): Promise<ProcSample | null> {
    if (this.#busy) return null;
    this.#busy = true;
    try {
      const s = await readProcSample(this.#pid);
      if (s === null) {
        this.stop();
        return null;
      }
      const previous = this.samples.at(-1);
      s.voluntaryCtxtSwitches = (previous?.voluntaryCtxtSwitches ?? 0) +
        switchIncrement(previous?.threadSwitches, s.threadSwitches);
      this.samples.push(s);
      return s;
    } finally {
      this.#busy = false;
    }
  }

  /** Stops sampling. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Wake-ups per second of a process between two heartbeats: voluntary switches summed over each
 * gap between consecutive beats (from 5 s after a beat to 1 s before the next), over their length.
 */
export function wakeupsBetweenBeats(samples: ProcSample[], beatsMs: number[]): number | null {
  let switches = 0;
  let seconds = 0;
  for (let i = 0; i + 1 < beatsMs.length; i++) {
    const gap = samples.filter((s) =>
      s.wallMs > beatsMs[i]! + 5_000 && s.wallMs < beatsMs[i + 1]! - 1_000
    );
    if (gap.length < 2) continue;
    switches += gap.at(-1)!.voluntaryCtxtSwitches - gap[0]!.voluntaryCtxtSwitches;
    seconds += (gap.at(-1)!.wallMs - gap[0]!.wallMs) / 1000;
  }
  return seconds < 30 ? null : switches / seconds;
}

/** Wake-ups per second over the same span as `beatsMs` (first to last beat). */
export function wakeupsOverSpan(samples: ProcSample[], beatsMs: number[]): number | null {
  if (beatsMs.length < 2) return null;
  const span = samples.filter((s) => s.wallMs > beatsMs[0]! && s.wallMs < beatsMs.at(-1)!);
  if (span.length < 2) return null;
  return (span.at(-1)!.voluntaryCtxtSwitches - span[0]!.voluntaryCtxtSwitches) /
    ((span.at(-1)!.wallMs - span[0]!.wallMs) / 1000);
}
