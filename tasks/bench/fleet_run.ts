/**
 * Runs the fleet suite in a process of its own (it is CPU-bound for tens of seconds and must not
 * stall the platform serving the measured agents) and prints the results as JSON.
 *
 * Usage: deno run tasks/bench/fleet_run.ts <agents> <interval-seconds> <runs> <seed>
 */
import { runFleetSuite } from "./fleet.ts";

if (import.meta.main) {
  const [agents, intervalSeconds, runs, seed] = Deno.args.map(Number);
  if ([agents, intervalSeconds, runs, seed].some((n) => !Number.isSafeInteger(n))) {
    throw new Error("Usage: fleet_run.ts <agents> <interval-seconds> <runs> <seed>");
  }
  const started = performance.now();
  const cases = runFleetSuite({
    agents: agents!,
    intervalSeconds: intervalSeconds!,
    runs: runs!,
    seed: seed!,
  });
  console.log(JSON.stringify({ cases, seconds: (performance.now() - started) / 1000 }));
}
