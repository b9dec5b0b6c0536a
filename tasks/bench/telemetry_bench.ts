import { TelemetryCollector } from "../../src/telemetry/collector.ts";

// One collector per process, as `run` keeps it: static facts are read by the warm-up below.
const collector = new TelemetryCollector();
await collector.collect();

Deno.bench("telemetry collect() after the first (static facts cached)", async () => {
  await collector.collect();
});

Deno.bench("telemetry metrics() only", () => {
  collector.metrics();
});

Deno.bench("telemetry first collect() on a new collector (reads static facts)", async () => {
  await new TelemetryCollector().collect();
});

Deno.bench("telemetry collect() + JSON.stringify (heartbeat body share)", async () => {
  JSON.stringify(await collector.collect());
});
