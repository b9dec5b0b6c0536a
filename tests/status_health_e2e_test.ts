/**
 * Issue 31 §4: `status` tells a live agent from a dead one (identity.lock's OS lock, not its pid
 * text), `status --health` exits 0/8/9/5 for monitoring, and an unenrolled host stays visible.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import denoJson from "../deno.json" with { type: "json" };
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollAgent, runAgent, startRun, statusJson, tempDir, until } from "./_support/helpers.ts";

Deno.test("status says running, then not running after kill -9; --health exits 0, then 9", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);
  await using run = startRun(dir.path, ["--interval", "1"]);
  await until(() => platform.heartbeats(agentId).length >= 1, "a first heartbeat");

  const live = await statusJson(dir.path);
  assert.equal(live.running, true);
  assert.equal(live.pid, run.child.pid);
  assert.equal(live.health, "ok");
  assert.equal(live.agent_version, denoJson.version);
  assert.equal(live.schema_version, 1);
  assert.equal("version" in live, false);
  const healthy = await runAgent(["--state-dir", dir.path, "status", "--health"]);
  assert.equal(healthy.code, 0, healthy.stderr);
  assert.match(healthy.stdout, new RegExp(`^Process: +running \\(pid ${run.child.pid}\\)$`, "m"));

  run.child.kill("SIGKILL");
  await run.exited();
  const dead = await runAgent(["--state-dir", dir.path, "status", "--health"]);
  assert.equal(dead.code, 9, dead.stderr);
  assert.match(dead.stdout, /^Process: +not running$/m);
  assert.match(dead.stdout, /^Next attempt: +none \(the agent is not running\)$/m);
  assert.equal(
    dead.stderr,
    `error: Agent ${JSON.stringify(agentId)} is not running (no process holds ${
      JSON.stringify(dir.path)
    }); start the service (systemctl start oneconnect-agent)\n`,
  );
  const json = await statusJson(dir.path);
  assert.deepEqual([json.running, json.pid, json.health], [false, null, "not_running"]);
  // Without --health, status reports and exits 0 as before.
  assert.equal((await runAgent(["--state-dir", dir.path, "status"])).code, 0);
});

Deno.test("status --health exits 8 while the running agent's heartbeats fail", async () => {
  const platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);
  await using run = startRun(dir.path, ["--interval", "1"]);
  await until(() => platform.heartbeats(agentId).length >= 1, "a first heartbeat");
  await platform[Symbol.asyncDispose]();
  await until(
    async () => Number((await statusJson(dir.path)).consecutive_failures) >= 1,
    "a failed heartbeat",
    30_000,
  );
  const failing = await runAgent(["--state-dir", dir.path, "status", "--health"]);
  assert.equal(failing.code, 8, failing.stderr);
  assert.match(
    failing.stderr,
    new RegExp(
      `^error: Agent "${agentId}" is running but its heartbeats are failing \\(\\d+ consecutive: `,
    ),
  );
  assert.equal((await statusJson(dir.path)).health, "failing");
  assert.equal(run.child.pid > 0, true);
});

Deno.test("status --health and run --metrics-file on a host that is not enrolled: exit 5, enrolled 0", async () => {
  await using dir = await tempDir();
  const state = join(dir.path, "state");
  const health = await runAgent(["--state-dir", state, "status", "--health"]);
  assert.equal(health.code, 5, health.stderr);
  const metrics = join(dir.path, "agent.prom");
  const run = await runAgent(["--state-dir", state, "run", "--metrics-file", metrics]);
  assert.equal(run.code, 5, run.stderr);
  const text = await Deno.readTextFile(metrics);
  assert.match(text, /^oneconnect_agent_enrolled 0$/m);
  assert.match(text, /^# TYPE oneconnect_agent_enrolled gauge$/m);
});

Deno.test("status --format prometheus says enrolled 1 for an enrolled host", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  await enrollAgent(platform, dir.path);
  const prom = await runAgent(["--state-dir", dir.path, "status", "--format", "prometheus"]);
  assert.equal(prom.code, 0, prom.stderr);
  assert.match(prom.stdout, /^oneconnect_agent_enrolled 1$/m);
});
