import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  enrollAgent,
  logLines,
  runAgent,
  skipWithout,
  startRun,
  statusJson,
  tempDir,
  until,
} from "./_support/helpers.ts";
import { TelemetryCollector } from "../src/telemetry/collector.ts";

const HOST_MACHINE_ID = (await new TelemetryCollector().host()).machine_id;

Deno.test("run sends contract-valid heartbeats with sequence increasing across a restart", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);

  const once = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(once.code, 0, once.stderr);
  assert.equal(once.stdout, "");
  assert.equal(platform.heartbeats(agentId).length, 1);
  /** Index of the first record of each agent process. */
  const firsts = [0];

  {
    firsts.push(platform.heartbeats(agentId).length);
    await using run = startRun(dir.path, ["--interval", "1"]);
    await until(() => platform.heartbeats(agentId).length >= 4, "three more heartbeats");
    const end = await run.terminate();
    assert.equal(end.code, 0, end.stderr);
    const messages = logLines(end.stderr).map((l) => l.msg);
    assert.ok(messages.includes("Started"), end.stderr);
    assert.ok(messages.includes("First heartbeat accepted"), end.stderr);
    assert.ok(messages.includes("Stopped"), end.stderr);
    // Healthy beats are logged at debug only.
    assert.ok(logLines(end.stderr).every((l) => l.level === "info"), end.stderr);
  }

  {
    // kill -9: nothing persisted at exit, yet the restart must not reuse a sequence.
    await using run = startRun(dir.path, ["--interval", "1"]);
    const seen = platform.heartbeats(agentId).length;
    firsts.push(seen);
    await until(() => platform.heartbeats(agentId).length >= seen + 2, "two more heartbeats");
    run.child.kill("SIGKILL");
    assert.notEqual((await run.exited()).code, 0);
  }

  firsts.push(platform.heartbeats(agentId).length);
  const again = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /Platform has seen sequence/);

  const records = platform.heartbeats(agentId);
  assert.ok(records.length >= 7);
  const sequences = records.map((r) => r.sequence);
  for (let i = 1; i < sequences.length; i++) {
    assert.ok(sequences[i]! > sequences[i - 1]!, `sequence not increasing: ${sequences}`);
  }
  for (const record of records) {
    const body = record.body as Record<string, unknown>;
    assert.equal(body.agent_id, agentId);
    assert.equal(body.sequence, record.sequence);
    assert.equal(record.auth, "bearer");
    assert.equal(record.had_authorization, true);
    assert.ok(Math.abs(Date.parse(String(body.sent_at)) - Date.parse(record.received_at)) < 60_000);
  }
  // Inventory delta: the first beat of every process carries the full host, the next one of a
  // process (same host) only its digest: the SHA-256 of the host's JSON text as received.
  const bodies = records.map((r) => r.body as { host?: unknown; host_digest?: string });
  for (const i of firsts) assert.ok(bodies[i]?.host !== undefined, `beat ${i} carries host`);
  assert.equal(bodies[firsts[1]! + 1]?.host, undefined, "a steady beat carries no host");
  let carried: { host?: unknown; host_digest?: string } | undefined;
  for (const b of bodies) {
    if (b.host !== undefined) {
      carried = b;
      const digest = createHash("sha256").update(JSON.stringify(b.host)).digest("hex");
      assert.equal(b.host_digest, digest);
    }
    assert.match(b.host_digest ?? "", /^[0-9a-f]{64}$/);
  }
  const agent = platform.agents().find((a) => a.agent_id === agentId);
  assert.deepEqual(agent?.host, carried?.host);
  assert.equal(agent?.host_digest, carried?.host_digest);
  assert.deepEqual(platform.contractViolations, []);

  const status = await statusJson(dir.path);
  assert.equal(status.agent_id, agentId);
  assert.equal(status.consecutive_failures, 0);
  assert.equal(status.last_error, null);
  assert.equal(status.sequence, sequences.at(-1));
  assert.ok(typeof status.last_success_at === "string");
  assert.ok(Number(status.sequence_reserved) >= Number(status.sequence));
});

Deno.test("run waits at least Retry-After (2 s) after a 503 before the next attempt", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);
  platform.injectFault({ route: "heartbeat", status: 503, retryAfter: "2", times: 1 });

  await using run = startRun(dir.path, ["--interval", "1", "--log-level", "debug"]);
  // Two: the agent has then surely handled the answer to the first (and logged the recovery).
  await until(() => platform.heartbeats(agentId).length >= 2, "heartbeats after the 503");
  const end = await run.terminate();
  assert.equal(end.code, 0, end.stderr);

  const lines = logLines(end.stderr);
  const failed = lines.filter((l) => l.msg === "Heartbeat failed");
  assert.equal(failed.length, 1, end.stderr);
  assert.match(String(failed[0]!.error), /503/);
  // The failure is logged after the 503 arrived and before the wait starts.
  const failedAt = Date.parse(String(failed[0]!.ts));
  const recoveredAt = Date.parse(platform.heartbeats(agentId)[0]!.received_at);
  assert.ok(
    recoveredAt - failedAt >= 2000,
    `next attempt ${recoveredAt - failedAt} ms after the 503, expected >= 2000`,
  );
  assert.ok(
    lines.some((l) => l.level === "warn" && /^Heartbeats failing since/.test(String(l.msg))),
  );
  assert.ok(
    lines.some((l) => /^Heartbeats recovered after 1 failed/.test(String(l.msg))),
    end.stderr,
  );
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("run exits 3 within one request when the credential is revoked, no retry storm", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);

  await using run = startRun(dir.path, ["--interval", "1"]);
  await until(() => platform.heartbeats(agentId).length >= 1, "a first heartbeat");
  platform.revokeCredential(agentId);
  const before = platform.requestCount;
  const end = await run.exited();
  assert.equal(end.code, 3, end.stderr);
  // At most the request already in flight when revoking, plus the one that got the 401.
  assert.ok(platform.requestCount - before <= 2, `${platform.requestCount - before} requests`);
  // JSON logs: the final error is a JSON line too, with its exit code.
  const error = logLines(end.stderr).filter((l) => l.level === "error");
  assert.equal(error.length, 1, end.stderr);
  assert.match(String(error[0]!.msg), /^Cannot send heartbeat: .*401.*re-enroll/);
  assert.equal(error[0]!.exit_code, 3);

  const status = await statusJson(dir.path);
  assert.equal((status.stopped as Record<string, unknown>).reason, "credential_rejected");
  assert.equal((status.last_error as Record<string, unknown>).http_status, 401);
  assert.equal(status.next_attempt_at, null);

  const text = await runAgent(["--state-dir", dir.path, "status"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^Stopped: .*credential_rejected/m);
  assert.match(text.stdout, /^Last error: +http 401/m);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`run exits 0 soon after ${signal}, aborting the request in flight`, async () => {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir();
    const agentId = await enrollAgent(platform, dir.path);
    // The platform sits on the first heartbeat far longer than the shutdown budget.
    platform.injectFault({ route: "heartbeat", delayMs: 120_000, times: 1 });
    const requestsBefore = platform.requestCount;

    await using run = startRun(dir.path);
    // Once the platform has the request, the agent is inside it: no sleep needed.
    await until(() => platform.requestCount > requestsBefore, "the heartbeat request to arrive");
    const end = await run.terminate(signal);
    assert.equal(end.code, 0, end.stderr);
    // "Soon" against a 120 s hold; loose enough for 2 busy cores.
    assert.ok(end.ms < 15_000, `took ${Math.round(end.ms)} ms to exit`);
    assert.equal(platform.heartbeats(agentId).length, 0);

    const status = JSON.parse(await Deno.readTextFile(join(dir.path, "status.json")));
    assert.equal(status.stopped.reason, "shutdown");
    assert.equal(status.stopped.message, `received ${signal}`);
    assert.equal(status.sequence, 1);
    assert.equal(status.consecutive_failures, 0);
  });
}

Deno.test({
  name: "run refuses an identity enrolled on another host: exit 3, nothing sent",
  // Without a machine id the guard has nothing to compare (its unit tests cover that case).
  ignore: skipWithout(HOST_MACHINE_ID !== null),
}, async () => {
  assert.ok(HOST_MACHINE_ID !== null, "this host has no machine id (/etc/machine-id)");
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  await enrollAgent(platform, dir.path);
  const path = join(dir.path, "identity.json");
  const identity = JSON.parse(await Deno.readTextFile(path));
  assert.equal(identity.machine_id, HOST_MACHINE_ID);
  identity.machine_id = "ffffffffffffffffffffffffffffffff";
  await Deno.writeTextFile(path, JSON.stringify(identity, null, 2), { mode: 0o600 });
  const requestsBefore = platform.requestCount;

  const result = await runAgent(["--state-dir", dir.path, "run"]);
  assert.equal(result.code, 3, result.stderr);
  assert.match(result.stderr, /^error: .*enrolled on another host \(cloned image\?\).*--force/m);
  assert.equal(platform.requestCount, requestsBefore);
  assert.equal(platform.heartbeats().length, 0);
  const status = await statusJson(dir.path);
  assert.equal((status.stopped as Record<string, unknown>).reason, "identity_cloned");
});

Deno.test("status --json reflects heartbeat success and failure", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);

  const fresh = await statusJson(dir.path);
  assert.equal(fresh.agent_id, agentId);
  assert.equal(fresh.last_success_at, null);
  assert.equal(typeof fresh.certificate_expires_at, "string");

  assert.equal((await runAgent(["--state-dir", dir.path, "run", "--once"])).code, 0);
  const ok = await statusJson(dir.path);
  assert.equal(typeof ok.last_success_at, "string");
  assert.equal(ok.consecutive_failures, 0);

  platform.injectFault({ route: "heartbeat", status: 503, retryAfter: "30", times: 1 });
  const failed = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(failed.code, 4, failed.stderr);
  assert.match(failed.stderr, /^error: Cannot send heartbeat: .*503/m);
  const bad = await statusJson(dir.path);
  assert.equal(bad.consecutive_failures, 1);
  assert.equal(bad.last_success_at, ok.last_success_at);
  assert.equal(typeof bad.failing_since, "string");
  const lastError = bad.last_error as Record<string, unknown>;
  assert.equal(lastError.http_status, 503);
  assert.equal(lastError.kind, "http");

  platform.deleteAgent(agentId);
  const gone = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(gone.code, 3, gone.stderr);
  assert.match(gone.stderr, /410.*re-enroll/);
  const stopped = await statusJson(dir.path);
  assert.equal((stopped.stopped as Record<string, unknown>).reason, "credential_rejected");
  assert.equal(stopped.consecutive_failures, 2);
});

Deno.test({
  name: "run repairs loose modes, warns of a certificate near expiry, and status shows both",
  ignore: Deno.build.os === "windows",
}, async () => {
  await using platform = await startDevPlatform({ quiet: true, certTtlSeconds: 3 * 86400 });
  await using dir = await tempDir();
  await enrollAgent(platform, dir.path);
  const identityPath = join(dir.path, "identity.json");
  await Deno.chmod(identityPath, 0o644);

  const result = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stderr,
    /WARN +Tightened permissions of .*identity\.json.* from 0644 to 0600/,
  );
  assert.match(result.stderr, /WARN +Agent certificate expires at \S+ \(in (71|72) h\)/);
  assert.equal((await Deno.stat(identityPath)).mode! & 0o777, 0o600);

  const status = await statusJson(dir.path);
  assert.deepEqual(status.permission_repairs, [
    { path: identityPath, old_mode: "0644", new_mode: "0600" },
  ]);
  const text = await runAgent(["--state-dir", dir.path, "status"]);
  assert.match(text.stdout, /^Permissions: +repaired .*identity\.json: 0644 -> 0600$/m);
  assert.match(text.stdout, /^Certificate: +expires .*\(expires within 7 days\)$/m);
});

Deno.test("run exits 5 when not enrolled", async () => {
  await using dir = await tempDir();
  const result = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(result.code, 5, result.stderr);
  assert.match(result.stderr, /^error: Not enrolled/);
});

Deno.test("run after a 503 Retry-After 99999 with a one-day interval: status --json shows the next attempt within 3960 s", async () => {
  const { IdentityStore } = await import("../src/state/identity_store.ts");
  const { createDevCa } = await import("../tasks/dev_platform/dev_ca.ts");
  const { makeIdentity } = await import("./_support/identity_fixture.ts");
  let beats = 0;
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      await req.body?.cancel();
      beats++;
      return new Response(JSON.stringify({ code: "unavailable" }), {
        status: 503,
        headers: { "content-type": "application/problem+json", "retry-after": "99999" },
      });
    },
  );
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const identity = await makeIdentity(await createDevCa(), {
    platformUrl: `http://127.0.0.1:${server.addr.port}/`,
  });
  await new IdentityStore(stateDir).save({ ...identity, heartbeat_interval_seconds: 86400 });
  const run = startRun(stateDir);
  try {
    let view: Record<string, string | number | null> = {};
    await until(() => beats >= 1, "the first heartbeat");
    const deadline = Date.now() + 20_000;
    while (view.next_attempt_at == null) {
      assert.ok(Date.now() < deadline, "status --json shows next_attempt_at");
      const status = await runAgent(["--state-dir", stateDir, "status", "--json"]);
      assert.equal(status.code, 0, status.stderr);
      view = JSON.parse(status.stdout);
    }
    assert.equal(view.consecutive_failures, 1);
    const waitS = (Date.parse(String(view.next_attempt_at)) -
      Date.parse(String(view.last_attempt_at))) / 1000;
    assert.ok(waitS >= 3599 && waitS <= 3961, `next attempt in ${waitS} s`);
  } finally {
    const out = await run.terminate();
    assert.equal(out.code, 0, out.stderr);
  }
  assert.equal(beats, 1);
});
