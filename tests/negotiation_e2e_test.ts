import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollAgent, spawnAgent, tempDir } from "./helpers.ts";

const decoder = new TextDecoder();

/** Polls `condition` every 50 ms; fails the test (never hangs it) after `ms`. */
async function until(condition: () => boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `run --interval 1` until `beats` heartbeats are recorded, then SIGTERMs it. */
async function runUntil(
  stateDir: string,
  recorded: () => number,
  beats: number,
): Promise<{ code: number; logs: Array<Record<string, unknown>>; stderr: string }> {
  const child = spawnAgent([
    "--state-dir",
    stateDir,
    "--log-format",
    "json",
    "run",
    "--interval",
    "1",
  ]);
  const output = child.output();
  try {
    await until(() => recorded() >= beats, `${beats} heartbeats`, beats * 2_000 + 20_000);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
  }
  const out = await output;
  const stderr = decoder.decode(out.stderr);
  const logs = stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { code: out.code, logs, stderr };
}

const carriesHost = (r: { body: unknown }) =>
  typeof r.body === "object" && r.body !== null && "host" in r.body;

Deno.test("run against a contract 1.0 platform: every one of 20 heartbeats carries host and is accepted", async () => {
  await using platform = await startDevPlatform({ quiet: true, contractVersion: "1.0" });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 20);
  assert.equal(end.code, 0, end.stderr);
  const records = platform.heartbeats(agentId);
  assert.ok(records.length >= 20);
  assert.ok(records.every(carriesHost), "a heartbeat without host went to a v1.0 platform");
  // Nothing refused: a refusal would show as a warning (and the platform does not record it).
  assert.deepEqual(end.logs.filter((l) => l.level !== "info"), [], end.stderr);
  const sequences = records.map((r) => r.sequence);
  assert.deepEqual(sequences, sequences.map((_, i) => sequences[0]! + i), "no sequence skipped");
  const status = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  assert.equal(status.consecutive_failures, 0);
  assert.deepEqual(status.platform_features, []);
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("run against a contract 1.3 platform: steady heartbeats are digest-only from the first run", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);
  // The enrollment answer's features are remembered for the first heartbeat of the first run.
  const enrolled = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  assert.deepEqual(enrolled.platform_features, ["host_digest"]);
  assert.equal(enrolled.agent_id, agentId);

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 5);
  assert.equal(end.code, 0, end.stderr);
  const records = platform.heartbeats(agentId);
  assert.deepEqual(records.map(carriesHost).slice(0, 5), [true, false, false, false, false]);
  assert.deepEqual(end.logs.filter((l) => l.level !== "info"), [], end.stderr);
  const status = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  assert.deepEqual(status.platform_features, ["host_digest"]);
  assert.deepEqual(platform.contractViolations, []);
});
