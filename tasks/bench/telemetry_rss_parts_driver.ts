/**
 * One isolated process of tasks/bench/telemetry_rss_parts.ts: does one scenario's work, lets it
 * settle, prints "ready" (the parent reads /proc/<pid>/status), then idles until killed.
 *
 * Usage: deno run <agent permission flags> tasks/bench/telemetry_rss_parts_driver.ts <scenario>
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const head = () =>
  new Deno.Command("/usr/bin/head", {
    args: ["-n", "4096", "/proc/stat"],
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();

/** Child outputs for the no-child scenario, by command line, recorded by the parent (argv). */
const RECORDED: Record<string, string> = JSON.parse(Deno.args[1] ?? "{}");

/** What each scenario loads or does; later scenarios include the run path's own costs. */
const SCENARIOS: Record<string, () => Promise<unknown>> = {
  bare: () => Promise.resolve(),
  // A Date formatted once: every heartbeat body does this (sent_at).
  date: () => Promise.resolve(new Date(0).toISOString()),
  "spawn head once": () => head(),
  "spawn head 3x sequential": async () => {
    for (let i = 0; i < 3; i++) await head();
  },
  "spawn head 3x parallel": () => Promise.all([head(), head(), head()]),
  // What a steady run loads anyway: the wire contract (zod and every schema) and a Date.
  "run base (contract + date)": async () => {
    await import("../../src/wire/contract.ts");
    new Date().toISOString();
  },
  "run base + collector import": async () => {
    await import("../../src/wire/contract.ts");
    new Date().toISOString();
    await import("../../src/telemetry/collector.ts");
  },
  "run base + spawn head once": async () => {
    await import("../../src/wire/contract.ts");
    new Date().toISOString();
    await head();
  },
  "run base + 200 collections, no child": async () => {
    await import("../../src/wire/contract.ts");
    new Date().toISOString();
    const { TelemetryCollector } = await import("../../src/telemetry/collector.ts");
    const { denoSystem } = await import("../../src/telemetry/system.ts");
    // The children's output, recorded by the parent on this machine and replayed: the same
    // parsing, no spawn.
    const system = {
      ...denoSystem,
      runCommand: (path: string, args: string[]) => {
        const out = RECORDED[[path, ...args].join(" ")];
        return out === undefined
          ? Promise.reject(new Error(`${path}: not recorded`))
          : Promise.resolve(out);
      },
    };
    const collector = new TelemetryCollector({ system });
    for (let i = 0; i < 200; i++) {
      JSON.stringify({ host: await collector.host(), metrics: await collector.sampleMetrics() });
      await sleep(1);
    }
  },
  "run base + 200 collections": async () => {
    await import("../../src/wire/contract.ts");
    new Date().toISOString();
    const { TelemetryCollector } = await import("../../src/telemetry/collector.ts");
    const collector = new TelemetryCollector();
    for (let i = 0; i < 200; i++) {
      JSON.stringify({ host: await collector.host(), metrics: await collector.sampleMetrics() });
      await sleep(1);
    }
  },
};

const name = Deno.args[0] ?? "";
const scenario = SCENARIOS[name];
if (!scenario) throw new Error(`Unknown scenario "${name}": ${Object.keys(SCENARIOS).join(", ")}`);
await scenario();
await sleep(1500);
console.log("ready");
await sleep(60_000);
