/**
 * `deno task bench-metrics-file`: what `run --metrics-file` costs. Agents at `run --interval 1`
 * side by side, half of them keeping a Prometheus textfile current, sampled from /proc: plateau
 * RSS and process CPU per heartbeat of each group, min / median / max over the replicas. Judged:
 * no measurable RSS (the difference of the medians within the plain agents' own spread, or under
 * 0.5 MiB) and < 0.2 ms CPU per heartbeat. Writes `bench/metrics_file.json`.
 *
 * Usage: deno task bench-metrics-file [--seconds N] [--replicas N]
 */
import { parseArgs } from "node:util";
import { bundle } from "../bundle.ts";
import { startDevPlatform } from "../dev_platform/server.ts";
import { clockTicksPerSecond, ProcSampler } from "./proc.ts";
import { enrollAgent, setAgentEntry, spawnAgent, stop } from "./processes.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "180" },
    replicas: { type: "string", default: "2" },
    out: { type: "string", default: "bench/metrics_file.json" },
  },
  strict: true,
});
const seconds = Number(values.seconds);
const replicas = Number(values.replicas);
if (!Number.isSafeInteger(seconds) || seconds < 60 || !Number.isSafeInteger(replicas)) {
  throw new Error("expected --seconds >= 60 and a whole --replicas");
}
const log = (msg: string) => console.error(`bench-metrics-file: ${msg}`);
const round = (v: number, d = 3) => Math.round(v * 10 ** d) / 10 ** d;

const root = await Deno.makeTempDir({ prefix: "oneconnect-bench-metrics-" });
try {
  setAgentEntry(await bundle(`${root}/bundle`));
  await using platform = await startDevPlatform({
    quiet: true,
    dataDir: `${root}/platform`,
    heartbeatHistoryLimit: 1_000_000,
  });
  const groups = ["plain", "metrics_file"] as const;
  const agents: { group: typeof groups[number]; dir: string; id: string }[] = [];
  for (const group of groups) {
    for (let i = 0; i < replicas; i++) {
      const dir = `${root}/${group}_${i}`;
      agents.push({ group, dir, id: await enrollAgent(dir, platform) });
    }
  }
  const ticks = await clockTicksPerSecond();
  const running = agents.map((a) => {
    const args = ["run", "--interval", "1"];
    if (a.group === "metrics_file") args.push("--metrics-file", `${a.dir}/agent.prom`);
    const child = spawnAgent(a.dir, args);
    const sampler = new ProcSampler(child.pid, 1000);
    sampler.start();
    return { ...a, child, sampler };
  });
  log(`${running.length} agents side by side for ${seconds} s`);
  const startMs = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  for (const r of running) r.sampler.stop();
  await Promise.all(running.map((r) => stop(r.child)));

  // The second half is the plateau this short run has; CPU over the same window.
  const fromMs = startMs + (seconds * 1000) / 2;
  const per = running.map((r) => {
    const plateau = r.sampler.samples.filter((s) => s.wallMs >= fromMs);
    const first = plateau[0]!;
    const last = plateau.at(-1)!;
    const beats = platform.heartbeats(r.id)
      .map((h) => Date.parse(h.received_at))
      .filter((t) => t > first.wallMs && t <= last.wallMs).length;
    return {
      group: r.group,
      rss_mib: round(median(plateau.map((s) => s.rssKiB)) / 1024, 2),
      heartbeats: beats,
      cpu_ms_per_heartbeat: round(((last.cpuTicks - first.cpuTicks) / ticks) * 1000 / beats),
    };
  });
  const summary = (group: string, key: "rss_mib" | "cpu_ms_per_heartbeat") => {
    const v = per.filter((p) => p.group === group).map((p) => p[key]);
    return { min: Math.min(...v), median: round(median(v)), max: Math.max(...v) };
  };
  const rss = { plain: summary("plain", "rss_mib"), with: summary("metrics_file", "rss_mib") };
  const cpu = {
    plain: summary("plain", "cpu_ms_per_heartbeat"),
    with: summary("metrics_file", "cpu_ms_per_heartbeat"),
  };
  const rssDelta = round(rss.with.median - rss.plain.median, 2);
  const cpuDelta = round(cpu.with.median - cpu.plain.median);
  const rssNoise = round(rss.plain.max - rss.plain.min, 2);
  const load = Deno.loadavg();
  const result = {
    generated_at: new Date().toISOString(),
    seconds,
    replicas,
    load_average_end: load,
    agents: per,
    rss_mib: rss,
    cpu_ms_per_heartbeat: cpu,
    rss_delta_mib: rssDelta,
    rss_plain_spread_mib: rssNoise,
    cpu_delta_ms_per_heartbeat: cpuDelta,
    rss_pass: rssDelta <= Math.max(0.5, rssNoise),
    cpu_pass: cpuDelta < 0.2,
  };
  await Deno.writeTextFile(values.out!, JSON.stringify(result, null, 2) + "\n");
  const fmt = (s: { min: number; median: number; max: number }) =>
    `${s.min} / ${s.median} / ${s.max}`;
  console.log(`| figure | plain run | run --metrics-file | difference of medians | target |`);
  console.log(`|---|---|---|---|---|`);
  console.log(
    `| plateau RSS, MiB (min / median / max) | ${fmt(rss.plain)} | ${
      fmt(rss.with)
    } | ${rssDelta} | no measurable difference (≤ max(0.5, plain spread ${rssNoise})): ${
      result.rss_pass ? "pass" : "FAIL"
    } |`,
  );
  console.log(
    `| CPU per heartbeat, ms (min / median / max) | ${fmt(cpu.plain)} | ${
      fmt(cpu.with)
    } | ${cpuDelta} | < 0.2: ${result.cpu_pass ? "pass" : "FAIL"} |`,
  );
  console.log(`load average at the end: ${load.join(" / ")}`);
} finally {
  await Deno.remove(root, { recursive: true }).catch(() => {});
}
