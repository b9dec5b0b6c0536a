/**
 * Long run, in a process of its own (`--v8-flags=--expose-gc`): the agent's heartbeat loop
 * (`heartbeatLoop` from src/heartbeat/loop.ts with one PlatformClient, a real TelemetryCollector and the
 * real status file) driven back to back for `--count` beats. Between beats it records the CPU
 * time each beat took; at the checkpoint beat and at the last one it forces a GC and records RSS
 * and heap. Stops after `count` beats or `max-seconds`, whichever comes first. Prints one JSON
 * object on stdout.
 *
 * Usage: deno run <agent flags> --v8-flags=--expose-gc tasks/bench/long_run.ts <state-dir> <count>
 *   <max-seconds> <checkpoint>
 */
import process from "node:process";
import { heartbeatLoop } from "../../src/heartbeat/loop.ts";
import { HeartbeatSchedule } from "../../src/heartbeat/schedule.ts";
import { IdentityStore } from "../../src/state/identity_store.ts";
import { silentLogger } from "../../src/log.ts";
import { PlatformClient } from "../../src/platform/client.ts";
import { StatusStore } from "../../src/state/status_store.ts";
import { TelemetryCollector } from "../../src/telemetry/collector.ts";

/** Memory at one checkpoint, after a forced full GC. */
export interface Checkpoint {
  beats: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Heap committed by V8 (part of RSS even when not used). */
  heapTotalBytes: number;
  externalBytes: number;
}

/** What the long run prints. */
export interface LongRunResult {
  beats: number;
  /** CPU (user + system, whole process) of each beat, in µs, from one wait to the next. */
  cpuMicros: number[];
  /** Wall time of each beat, in µs. */
  wallMicros: number[];
  checkpoints: Checkpoint[];
  failures: number;
  /** Whether `max-seconds` ran out before `count` beats. */
  timedOut: boolean;
  seconds: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function fullGc(): void {
  if (gc === undefined) throw new Error("Cannot force GC: run with --v8-flags=--expose-gc");
  // Twice: the first pass can leave objects that only become garbage after finalisers ran.
  gc();
  gc();
}

async function main(): Promise<void> {
  const [stateDir, countText, maxSecondsText, checkpointText] = Deno.args;
  const count = Number(countText);
  const maxMs = Number(maxSecondsText) * 1000;
  const checkpoint = Number(checkpointText);
  if (
    stateDir === undefined || !Number.isSafeInteger(count) || count < 1 || !(maxMs > 0) ||
    !Number.isSafeInteger(checkpoint)
  ) {
    throw new Error("Usage: long_run.ts <state-dir> <count> <max-seconds> <checkpoint>");
  }
  const store = new IdentityStore(stateDir, { logger: silentLogger });
  const identity = await store.load();
  const status = await StatusStore.open(stateDir, identity.agent_id, { logger: silentLogger });
  const collector = new TelemetryCollector({ logger: silentLogger });
  const pinned = [...identity.ca_certificates, ...identity.bootstrap_ca_certificates];
  using client = new PlatformClient({
    baseUrl: new URL(identity.platform_url),
    caCertificates: pinned.length > 0 ? pinned : undefined,
    auth: { kind: "bearer", token: identity.service_account_token },
    env: () => undefined,
    logger: silentLogger,
  });
  const schedule = new HeartbeatSchedule({ intervalSeconds: 60, random: Math.random });
  const shutdown = new AbortController();

  const result: LongRunResult = {
    beats: 0,
    cpuMicros: [],
    wallMicros: [],
    checkpoints: [],
    failures: 0,
    timedOut: false,
    seconds: 0,
  };
  const started = performance.now();
  const takeCheckpoint = () => {
    fullGc();
    const mem = Deno.memoryUsage();
    result.checkpoints.push({
      beats: result.beats,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      heapTotalBytes: mem.heapTotal,
      externalBytes: mem.external,
    });
  };
  let cpu = process.cpuUsage();
  let wall = performance.now();
  // The loop's wait is the only point between two beats: account the beat that just ended there,
  // take a checkpoint if due, then let the next beat start at once instead of after the interval.
  const betweenBeats = (callback: () => void): number => {
    const used = process.cpuUsage(cpu);
    result.cpuMicros.push(used.user + used.system);
    result.wallMicros.push(Math.round((performance.now() - wall) * 1000));
    result.beats++;
    if (status.current.consecutive_failures > 0) result.failures++;
    if (result.beats === checkpoint) takeCheckpoint();
    result.timedOut = performance.now() - started > maxMs;
    if (result.beats >= count || result.timedOut) {
      if (result.beats !== checkpoint) takeCheckpoint();
      result.seconds = (performance.now() - started) / 1000;
      shutdown.abort(new Error("long run done"));
    } else {
      queueMicrotask(callback);
    }
    cpu = process.cpuUsage();
    wall = performance.now();
    return result.beats;
  };

  await heartbeatLoop({
    agentId: identity.agent_id,
    send: async (body, signal) => {
      const answer = await client.heartbeat(identity.agent_id, body, signal);
      collector.delivered(body.metrics);
      return answer;
    },
    snapshot: async () => ({
      host: await collector.host(),
      metrics: await collector.sampleMetrics(),
    }),
    status,
    schedule,
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now(),
    timers: { setTimeout: (callback) => betweenBeats(callback), clearTimeout: () => {} },
    logger: silentLogger,
    shutdown: shutdown.signal,
  });
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main();
