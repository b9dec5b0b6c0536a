/**
 * One isolated process of tasks/bench/telemetry_footprint.ts: loads the collector of the source
 * tree given as the first argument (before or after a change), warms it up, then collects as a
 * heartbeat does, `beats` times, signalling the parent through stdout so it can read /proc.
 *
 * Usage: deno run <agent permission flags> --config <tree>/deno.json \
 *   tasks/bench/telemetry_footprint_driver.ts <tree> <beats> <beats|refresh>
 */
const [tree, beatsArg, mode] = Deno.args;
const { TelemetryCollector } = await import(`${tree}/src/telemetry/collector.ts`);
const beats = Number(beatsArg);
const collector = new TelemetryCollector();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const encoder = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`));

// What `run` does per beat: host (delta-hashed), metrics (with the samplers when due), JSON with
// `sent_at` (a Date: V8's date/time-zone cache is paid by every heartbeat body, before and after).
async function beat(): Promise<number> {
  const host = await collector.host();
  const metrics = typeof collector.sampleMetrics === "function"
    ? await collector.sampleMetrics()
    : collector.metrics();
  return JSON.stringify({ sent_at: new Date().toISOString(), host, metrics }).length;
}

for (let i = 0; i < 20; i++) await beat();
await sleep(1500); // settle: the samplers' first runs and start-up garbage are behind
say("ready");
await sleep(300); // the parent samples here
for (let i = 0; i < beats; i++) {
  if (mode === "refresh") await collector.refresh(true);
  else await beat();
  await sleep(1);
}
say("done");
await sleep(1500); // the parent samples here
