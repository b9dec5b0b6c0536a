/**
 * Where the telemetry's steady RSS goes (issue 20's budget): isolated processes with the agent's
 * permission and V8 flags, one scenario each, several runs alternating; VmRSS split into RssAnon
 * (private heap) and RssFile (pages of the deno executable and its ICU data: shared with every
 * other deno process and reclaimable). Linux only.
 *
 * Usage: deno run -A tasks/bench/telemetry_rss_parts.ts [--runs 5]
 */
import { parseArgs } from "node:util";
import { agentPermissionFlags } from "../permissions.ts";

const DRIVER = new URL("./telemetry_rss_parts_driver.ts", import.meta.url).pathname;
const SCENARIOS = [
  "bare",
  "date",
  "spawn head once",
  "spawn head 3x sequential",
  "spawn head 3x parallel",
  "run base (contract + date)",
  "run base + collector import",
  "run base + spawn head once",
  "run base + 200 collections, no child",
  "run base + 200 collections",
];
const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "5" } },
});
const flags = await agentPermissionFlags();

/** This machine's outputs of the collector's children, for the scenario that replays them. */
async function recordChildren(): Promise<string> {
  const { LINUX_INVENTORY_ARGS } = await import("../../src/telemetry/hardware.ts");
  const { DF, DF_ARGS } = await import("../../src/telemetry/filesystems.ts");
  const { HEAD } = await import("../../src/telemetry/proc_reader.ts");
  const { childStdout } = await import("../../src/child_process.ts");
  const sampler = ["-n", "4096", "/proc/stat", "/proc/net/dev", "/proc/loadavg"];
  const out: Record<string, string> = {};
  for (
    const [path, args] of [[HEAD, [...LINUX_INVENTORY_ARGS]], [HEAD, sampler], [DF, [
      ...DF_ARGS,
    ]]] as const
  ) {
    out[[path, ...args].join(" ")] = await childStdout(path, [...args], { anyExit: true });
  }
  return JSON.stringify(out);
}
const recorded = await recordChildren();

function kib(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (!m) throw new Error(`Cannot parse /proc status: no "${field}" field`);
  return Number(m[1]);
}

async function measure(scenario: string): Promise<[number, number, number]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...flags, DRIVER, scenario, recorded],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`driver "${scenario}" exited before it was ready`);
    out += value;
  }
  const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
  child.kill();
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  await child.status;
  return [kib(status, "VmRSS"), kib(status, "RssAnon"), kib(status, "RssFile")];
}

const samples = new Map(SCENARIOS.map((s) => [s, [] as [number, number, number][]]));
for (let run = 0; run < Number(values.runs); run++) {
  for (const scenario of SCENARIOS) samples.get(scenario)!.push(await measure(scenario));
}
const mib = (v: number) => (v / 1024).toFixed(2);
const stat = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `${mib(s[Math.floor(s.length / 2)]!)} (${mib(s[0]!)}..${mib(s.at(-1)!)})`;
};
console.log(`deno ${Deno.version.deno}, ${values.runs} runs each; median (min..max) MiB`);
console.log(`${"scenario".padEnd(30)} ${"VmRSS".padEnd(20)} ${"RssAnon".padEnd(20)} RssFile`);
for (const [scenario, xs] of samples) {
  const cols = [0, 1, 2].map((i) => stat(xs.map((x) => x[i]!)).padEnd(20));
  console.log(`${scenario.padEnd(30)} ${cols.join(" ")}`);
}
