import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollAgent, logLines, startRun, tempDir, until } from "./_support/helpers.ts";

/** Runs `run --interval 1` until `beats` heartbeats are recorded, then SIGTERMs it. */
function runUntil(
  stateDir: string,
  recorded: () => number,
  beats: number,
): Promise<{ code: number; logs: Array<Record<string, unknown>>; stderr: string }> {
  return runWhile(
    stateDir,
    () => recorded() >= beats,
    `${beats} heartbeats`,
    beats * 2_000 + 20_000,
  );
}

/** Runs `run --interval 1` until `done()`, then SIGTERMs it. */
async function runWhile(
  stateDir: string,
  done: () => boolean,
  what: string,
  ms: number,
): Promise<{ code: number; logs: Array<Record<string, unknown>>; stderr: string }> {
  await using run = startRun(stateDir, ["--interval", "1"]);
  await until(done, what, ms);
  const { code, stderr } = await run.terminate();
  return { code, logs: logLines(stderr), stderr };
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
  assert.ok(
    records.every((r) => !("clock_offset" in (r.body as object)) && !("gap" in (r.body as object))),
    "a v1.3 member went to a v1.0 platform",
  );
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
  assert.deepEqual(enrolled.platform_features, ["host_digest", "gap", "clock_offset"]);
  assert.equal(enrolled.agent_id, agentId);

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 5);
  assert.equal(end.code, 0, end.stderr);
  const records = platform.heartbeats(agentId);
  assert.deepEqual(records.map(carriesHost).slice(0, 5), [true, false, false, false, false]);
  assert.deepEqual(end.logs.filter((l) => l.level !== "info"), [], end.stderr);
  const status = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  assert.deepEqual(status.platform_features, ["host_digest", "gap", "clock_offset"]);
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("run against a platform that advertises host_digest but refuses beats without host: one resend, one warning, host on every later beat", async () => {
  await using platform = await startDevPlatform({ quiet: true, refuseDigestOnly: true });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 6);
  assert.equal(end.code, 0, end.stderr);
  const records = platform.heartbeats(agentId);
  assert.ok(records.every(carriesHost), "only beats with host are accepted here");
  // Beat 2 (digest-only) was refused; beat 3 is its immediate resend; no other beat was lost.
  const sequences = records.map((r) => r.sequence);
  assert.deepEqual(sequences.slice(0, 5), [1, 3, 4, 5, 6], end.stderr);
  const resendMs = Date.parse(records[1]!.received_at) - Date.parse(records[0]!.received_at);
  const nextMs = Date.parse(records[2]!.received_at) - Date.parse(records[1]!.received_at);
  assert.ok(resendMs < nextMs + 500, `resent at once: ${resendMs} ms vs ${nextMs} ms`);
  const warnings = end.logs.filter((l) => l.level === "warn").map((l) => String(l.msg));
  assert.equal(warnings.length, 1, end.stderr);
  assert.match(
    warnings[0]!,
    /^Platform refused a heartbeat without host \(platform answered 400 invalid_request: host is not an object\); sending the full host on every heartbeat of this process$/,
  );
  const status = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  assert.equal(status.consecutive_failures, 0);
  assert.deepEqual(platform.contractViolations, []);
});

const gapOf = (r: { body: unknown }) => (r.body as { gap?: unknown }).gap;

Deno.test("run after two refused heartbeats: the first accepted one carries the gap, later ones none", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);
  platform.injectFault({ route: "heartbeat", status: 503, times: 2 });

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 2);
  assert.equal(end.code, 0, end.stderr);
  const [first, second] = platform.heartbeats(agentId);
  assert.equal(first!.sequence, 3, "two refused attempts before it");
  const gap = gapOf(first!) as { since: string };
  assert.deepEqual(gap, {
    since: gap.since,
    attempts: 2,
    last_error: { kind: "http", status: 503, code: "unavailable" },
  });
  assert.deepEqual(first!.gap, gap, "recorded by the platform");
  assert.ok(Date.parse(gap.since) < Date.parse(first!.received_at));
  assert.equal(gapOf(second!), undefined);
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("run restarted during an outage: the new process reports the whole gap on its first accepted beat", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);
  platform.injectFault({ route: "heartbeat", status: 502 });
  const statusFile = join(stateDir, "status.json");
  const failures = () => {
    try {
      return JSON.parse(Deno.readTextFileSync(statusFile)).consecutive_failures as number;
    } catch {
      return 0;
    }
  };
  const down = await runWhile(stateDir, () => failures() >= 2, "two failed attempts", 30_000);
  assert.equal(down.code, 0, down.stderr);
  const before = JSON.parse(await Deno.readTextFile(statusFile));
  assert.ok(before.consecutive_failures >= 2);
  assert.equal(platform.heartbeats(agentId).length, 0);

  platform.clearFaults();
  const up = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 1);
  assert.equal(up.code, 0, up.stderr);
  const [first] = platform.heartbeats(agentId);
  assert.deepEqual(gapOf(first!), {
    since: before.failing_since,
    attempts: before.consecutive_failures,
    last_error: { kind: "http", status: 502, code: "bad_gateway" },
  });
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("run against a contract 1.0 platform after refused heartbeats: no gap is ever sent", async () => {
  await using platform = await startDevPlatform({ quiet: true, contractVersion: "1.0" });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);
  platform.injectFault({ route: "heartbeat", status: 503, times: 2 });

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 3);
  assert.equal(end.code, 0, end.stderr);
  const records = platform.heartbeats(agentId);
  assert.equal(records[0]!.sequence, 3, "two refused attempts before it");
  assert.ok(records.every((r) => gapOf(r) === undefined && r.gap === undefined));
  // The platform also counts a gap it did not advertise as a violation.
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("run reports this host's clock offset once the platform advertises clock_offset", async () => {
  // 30 s: measurable, below the 60 s warning, so the run stays quiet.
  await using platform = await startDevPlatform({ quiet: true, clockOffsetSeconds: 30 });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);

  const end = await runUntil(stateDir, () => platform.heartbeats(agentId).length, 3);
  assert.equal(end.code, 0, end.stderr);
  const records = platform.heartbeats(agentId);
  // Measured from each answer's Date header; the first beat of a fresh identity has none yet.
  const offsets = records.slice(1).map((r) => r.clock_offset);
  for (const offset of offsets) {
    assert.ok(offset, JSON.stringify(records.map((r) => r.clock_offset)));
    assert.ok(Math.abs(offset.seconds - 30) <= 2, String(offset.seconds));
    assert.ok(Math.abs(Date.parse(offset.measured_at) - Date.now()) < 60_000);
  }
  const status = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  assert.ok(Math.abs(status.clock_offset.seconds - 30) <= 2);
  assert.deepEqual(platform.contractViolations, []);
});
