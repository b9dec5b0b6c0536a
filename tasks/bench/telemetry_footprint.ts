/**
 * Side-by-side footprint of the telemetry collector before and after a change (issue 20): steady
 * RSS and CPU per collection, each in isolated processes with the agent's own permission flags
 * and V8 flags, several runs alternating; the cost of one child-process sample (df and
 * /proc/net/dev, children's CPU included); and heartbeat body sizes with 4 filesystems and 4
 * interfaces. Linux only (reads /proc of the children).
 *
 * Usage:
 *   deno run -A tasks/bench/telemetry_footprint.ts [--before <git rev>] [--runs 5] [--beats 2000]
 */
import { parseArgs } from "node:util";
import { parsePermissionFlags } from "../permissions.ts";
import { parseProcStat, parseProcStatus } from "./proc.ts";
import { FOUR_INTERFACE_HOST } from "./wire.ts";
import { TelemetryCollector } from "../../src/telemetry/collector.ts";
import type { SystemSeam } from "../../src/telemetry/system.ts";
import { DF } from "../../src/telemetry/filesystems.ts";
import { HEAD } from "../../src/telemetry/proc_reader.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const DRIVER = new URL("./telemetry_footprint_driver.ts", import.meta.url).pathname;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    before: { type: "string", default: "main" },
    runs: { type: "string", default: "5" },
    beats: { type: "string", default: "2000" },
  },
});
const RUNS = Number(values.runs);
const BEATS = Number(values.beats);
const TICKS_PER_SECOND = 100;

async function git(args: string[], cwd = ROOT): Promise<string> {
  const out = await new Deno.Command("git", { args, cwd, stdout: "piped" }).output();
  if (!out.success) throw new Error(`git ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** Extracts `rev`'s src/, tasks/permissions.flags and deno.json into a temp dir. */
async function checkoutTree(rev: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-footprint-" });
  const archive = new Deno.Command("git", {
    args: ["archive", rev, "src", "tasks/permissions.flags", "deno.json", "deno.lock"],
    cwd: ROOT,
    stdout: "piped",
  }).spawn();
  const tar = new Deno.Command("tar", { args: ["-x", "-C", dir], stdin: "piped" }).spawn();
  await archive.stdout.pipeTo(tar.stdin);
  if (!(await tar.status).success) throw new Error(`Cannot extract ${rev}`);
  return dir;
}

interface Sample {
  rssKiB: number;
  selfTicks: number;
  childTicks: number;
}

async function sample(pid: number): Promise<Sample> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const own = parseProcStat(stat);
  // cutime and cstime (fields 16 and 17): CPU of waited-for children (df, head).
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const status = parseProcStatus(await Deno.readTextFile(`/proc/${pid}/status`));
  return {
    rssKiB: status.vmRssKiB,
    selfTicks: own.utimeTicks + own.stimeTicks,
    childTicks: Number(rest[13]) + Number(rest[14]),
  };
}

/** One isolated driver process; resolves to steady RSS and CPU per operation. */
async function measure(tree: string, mode: "beats" | "refresh", ops: number) {
  const flags = parsePermissionFlags(await Deno.readTextFile(`${tree}/tasks/permissions.flags`));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      ...flags,
      "--config",
      `${tree}/deno.json`,
      DRIVER,
      tree,
      String(ops),
      mode,
    ],
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/root" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const waitFor = async (word: string) => {
    while (!buffered.includes(`${word}\n`)) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`driver exited before "${word}"`);
      buffered += value;
    }
  };
  await waitFor("ready");
  const a = await sample(child.pid);
  await waitFor("done");
  await new Promise((r) => setTimeout(r, 500));
  const b = await sample(child.pid);
  lines.releaseLock();
  await child.stdout.cancel().catch(() => {});
  await child.status;
  const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
  return {
    rssMiB: b.rssKiB / 1024,
    cpuMsPerOp: ms(b.selfTicks - a.selfTicks) / ops,
    childCpuMsPerOp: ms(b.childTicks - a.childTicks) / ops,
  };
}

const stats = (xs: number[], digits = 2) => {
  const s = [...xs].sort((x, y) => x - y);
  const f = (v: number) => v.toFixed(digits);
  return `min ${f(s[0]!)}  median ${f(s[Math.floor(s.length / 2)]!)}  max ${f(s.at(-1)!)}`;
};

// --- Heartbeat body sizes: 4 filesystems, 4 interfaces, long values. ---
const DF_4 = [
  "Type 1B-blocks Used Avail Inodes IFree Mounted on",
  "ext4 502391226368 201854017536 274931658752 31227904 29915463 /",
  "vfat 535805952 6369280 529436672 0 0 /boot/efi",
  "xfs 4000787030016 1412316860416 2586817118208 390700800 388652031 /var/lib/postgresql",
  "ext4 16000900661248 9412316860416 5786817118208 488378368 480652031 /srv/backups-long-name",
].join("\n");
let traffic = 1;
const netDev = () =>
  "Inter-| Receive | Transmit\n face |bytes|bytes\n" +
  ["ens5", "ens6", "docker0", "wg0"].map((n, i) => {
    const v = (base: number) => String(base * traffic + i);
    return `${n}: ${v(912345678901)} ${v(912345678)} ${v(12)} 0 0 0 0 0 ${v(812345678901)} ${
      v(812345678)
    } ${v(3)} 0 0 0 0 0`;
  }).join("\n");
let cpuTick = 1;
let nowMs = Date.parse("2026-12-01T00:00:00Z");
const sizeSystem: SystemSeam = {
  ...FOUR_INTERFACE_HOST,
  runCommand: (path, args) =>
    Promise.resolve(
      path === DF
        ? DF_4
        : path === HEAD && args[0] === "-n"
        ? `==> /proc/stat <==\ncpu  ${123456789 * cpuTick} 0 ${23456789 * cpuTick} ${
          987654321 * cpuTick
        } ${1234 * cpuTick} 0 ${567 * cpuTick} ${
          89 * cpuTick
        } 0 0\n\n==> /proc/net/dev <==\n${netDev()}\n\n==> /proc/loadavg <==\n0.52 0.58 0.59 3/12345 98765\n`
        : "==> /proc/1/cgroup <==\n0::/init.scope\n",
    ),
  cpus: () =>
    Promise.resolve(Array.from({ length: 64 }, () => ({
      model: "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
      speed: 2900,
      times: {
        user: 123456789 * cpuTick,
        nice: 0,
        sys: 23456789 * cpuTick,
        idle: 987654321 * cpuTick,
        irq: 0,
      },
    }))),
  readLink: () => Promise.resolve("/usr/share/zoneinfo/America/Argentina/ComodRivadavia"),
  target: "x86_64-unknown-linux-gnu",
};
const sizes = new TelemetryCollector({ system: sizeSystem, now: () => new Date(nowMs) });
const body = (metrics: unknown, sequence: number) =>
  new TextEncoder().encode(JSON.stringify({
    agent_id: "3f0c6a52-1b7e-4c9a-9d1e-2a4b6c8d0e1f",
    sequence,
    sent_at: new Date(nowMs).toISOString(),
    agent_version: "0.1.0",
    host_digest: "0".repeat(64),
    metrics,
  })).length;
sizes.delivered(await sizes.sampleMetrics()); // beat 1: baseline (filesystems, no cpu/network yet)
const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v)).length;
const beatSizes: Record<string, number> = {};
for (let i = 2; i <= 6; i++) {
  nowMs += 60_000;
  traffic++;
  cpuTick++;
  const m = await sizes.sampleMetrics();
  sizes.delivered(m);
  const { cpu: _c, filesystems: _f, network: _n, ...v12 } = m;
  const { swap_used_bytes: _s, ...memory12 } = m.memory ?? {};
  if (i === 2) {
    beatSizes["v1.2 metrics part (same host)"] = bytes({ ...v12, memory: memory12 });
    beatSizes["v1.3 steady metrics part (cpu + network)"] = bytes(m);
    beatSizes["v1.3 steady body (no host)"] = body(m, 123456789);
  }
  if (m.filesystems) {
    beatSizes["v1.3 metrics part with filesystems"] = bytes(m);
    beatSizes["v1.3 body with filesystems (every 5 min)"] = body(m, 123456789);
  }
}

// --- Footprint, before vs after, alternating isolated processes. ---
const rev = await git(["merge-base", "HEAD", values.before!]);
const beforeTree = await checkoutTree(rev);
try {
  const results: Record<"before" | "after", { rss: number[]; cpu: number[] }> = {
    before: { rss: [], cpu: [] },
    after: { rss: [], cpu: [] },
  };
  for (let run = 0; run < RUNS; run++) {
    for (const [name, tree] of [["before", beforeTree], ["after", ROOT]] as const) {
      const r = await measure(tree, "beats", BEATS);
      results[name].rss.push(r.rssMiB);
      results[name].cpu.push(r.cpuMsPerOp);
    }
  }
  const refresh = [];
  for (let run = 0; run < RUNS; run++) refresh.push(await measure(ROOT, "refresh", 40));

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(
    `telemetry footprint: before = ${
      rev.slice(0, 10)
    } (merge-base with ${values.before}), after = working tree`,
  );
  console.log(`deno ${Deno.version.deno}, ${RUNS} runs each, ${BEATS} collections per run\n`);
  for (const name of ["before", "after"] as const) {
    console.log(`${name.padEnd(6)} steady RSS MiB     ${stats(results[name].rss)}`);
    console.log(`${name.padEnd(6)} CPU ms/collection  ${stats(results[name].cpu, 3)}`);
  }
  const dRss = median(results.after.rss) - median(results.before.rss);
  const dCpu = median(results.after.cpu) - median(results.before.cpu);
  console.log(
    `\ndelta (median) RSS ${dRss.toFixed(2)} MiB (budget +1.5), CPU ${
      dCpu.toFixed(3)
    } ms/collection (budget +0.3)`,
  );
  const spawnCpu = refresh.map((r) => r.cpuMsPerOp + r.childCpuMsPerOp);
  console.log(
    `one forced sample (df + head /proc/net/dev), agent + children CPU ms: ${stats(spawnCpu, 2)}`,
  );
  console.log(`  of which agent process: ${stats(refresh.map((r) => r.cpuMsPerOp), 2)}`);
  const m = median(spawnCpu);
  console.log(
    `  amortised at the default 60 s interval (network every beat, df every 5th): ${
      (m / 2 + m / 2 / 5).toFixed(3)
    } ms/beat (approx: half the pair each)`,
  );
  console.log(
    `  amortised at --interval 1 (bench): ${((m / 2) / 60 + (m / 2) / 300).toFixed(4)} ms/beat`,
  );
  console.log("\nheartbeat bytes (64 cores, 4 filesystems, 4 interfaces, long values):");
  for (const [k, v] of Object.entries(beatSizes)) console.log(`  ${k.padEnd(44)} ${v}`);
} finally {
  await Deno.remove(beforeTree, { recursive: true });
}
