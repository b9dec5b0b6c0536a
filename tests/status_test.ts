import assert from "node:assert/strict";
import { join } from "node:path";
import { NotEnrolledError, UsageError } from "../src/errors.ts";
import { denoFileSystem, type FileSystem } from "../src/file_system.ts";
import { createLogger } from "../src/log.ts";
import {
  type AgentStatus,
  emptyStatus,
  readStatus,
  statusPath,
  StatusStore,
} from "../src/state/status_store.ts";
import {
  healthProblem,
  notEnrolledView,
  readStatusReport,
  statusView,
} from "../src/heartbeat/status_report.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { acquireStateLock } from "../src/state/state_lock.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";
import { renderStatusText } from "../src/heartbeat/status_text.ts";
import { runAgent, tempDir } from "./_support/helpers.ts";
import denoJson from "../deno.json" with { type: "json" };

const NOW = Date.parse("2026-11-29T12:00:00Z");
const IDENTITY = {
  agent_id: "agent-7",
  platform_url: "https://platform.example.com/",
  enrolled_at: "2026-11-01T00:00:00.000Z",
  certificate_not_after: "2026-12-02T12:00:00.000Z",
};

function failingStatus(): AgentStatus {
  return {
    ...emptyStatus("agent-7"),
    last_attempt_at: "2026-11-29T11:59:00.000Z",
    last_success_at: "2026-11-29T11:00:00.000Z",
    consecutive_failures: 4,
    failing_since: "2026-11-29T11:01:00.000Z",
    last_error: {
      kind: "http",
      http_status: 503,
      code: "maintenance",
      message: "platform answered 503 maintenance: back soon",
    },
    sequence: 42,
    sequence_reserved: 100,
    next_attempt_at: "2026-11-29T12:00:30.000Z",
    certificate_expires_at: IDENTITY.certificate_not_after,
    permission_repairs: [{ path: "/state/identity.json", old_mode: "0644", new_mode: "0600" }],
  };
}

Deno.test("status store writes status.json atomically with mode 0600 and reads it back", async () => {
  await using dir = await tempDir();
  const store = await StatusStore.open(dir.path, "agent-7");
  assert.deepEqual(store.current, emptyStatus("agent-7"));
  store.current = failingStatus();
  await store.save();
  const info = await Deno.stat(statusPath(dir.path));
  if (Deno.build.os !== "windows") assert.equal(info.mode! & 0o777, 0o600);
  assert.deepEqual(await readStatus(statusPath(dir.path)), failingStatus());
  const reopened = await StatusStore.open(dir.path, "agent-7");
  assert.deepEqual(reopened.current, failingStatus());
  // No temp files left behind.
  const names = [];
  for await (const entry of Deno.readDir(dir.path)) names.push(entry.name);
  assert.deepEqual(names, ["status.json"]);
});

Deno.test("status store keeps fields it does not know (written by newer code)", async () => {
  await using dir = await tempDir();
  const path = statusPath(dir.path);
  const renewal = {
    next_at: "2026-12-01T00:00:00.000Z",
    last_error: null,
    last_renewed_at: null,
  };
  await Deno.writeTextFile(
    path,
    JSON.stringify({ ...failingStatus(), renewal, future_field: { x: 1 } }),
  );
  const store = await StatusStore.open(dir.path, "agent-7");
  store.current.sequence = 43;
  await store.save();
  const json = JSON.parse(await Deno.readTextFile(path));
  assert.deepEqual(json.future_field, { x: 1 });
  assert.deepEqual(json.renewal, renewal);
  assert.equal(json.sequence, 43);
});

Deno.test("status store starts afresh for another identity", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(statusPath(dir.path), JSON.stringify(failingStatus()));
  const store = await StatusStore.open(dir.path, "agent-8");
  assert.deepEqual(store.current, emptyStatus("agent-8"));
});

Deno.test("status file keeps the platform's features; one written before them still loads", async () => {
  await using dir = await tempDir();
  const path = statusPath(dir.path);
  // A status.json of an agent before contract v1.3: no `platform_features`.
  await Deno.writeTextFile(path, JSON.stringify(failingStatus()));
  const old = await readStatus(path);
  assert.ok(old !== null);
  assert.equal(old.platform_features, undefined);
  const store = new StatusStore(path, { ...old, platform_features: ["host_digest", "x_future"] });
  await store.save();
  assert.deepEqual((await readStatus(path))?.platform_features, ["host_digest", "x_future"]);
});

Deno.test("status file that is corrupt or wrongly shaped is ignored with a warning", async () => {
  await using dir = await tempDir();
  const path = statusPath(dir.path);
  for (
    const content of [
      "",
      "{not json",
      "[]",
      JSON.stringify({ ...failingStatus(), sequence: -1 }),
      JSON.stringify({ ...failingStatus(), version: 2 }),
      JSON.stringify({ ...failingStatus(), platform_features: "host_digest" }),
    ]
  ) {
    await Deno.writeTextFile(path, content);
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l) });
    assert.equal(await readStatus(path, { logger }), null, content);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /WARN .*status file/);
  }
});

Deno.test({
  name: "status file that is a symlink or a directory is refused, never followed",
  // Symlinks need a privilege on Windows.
  ignore: Deno.build.os === "windows",
}, async () => {
  await using dir = await tempDir();
  const path = statusPath(dir.path);
  const target = join(dir.path, "elsewhere.json");
  await Deno.writeTextFile(target, JSON.stringify(failingStatus()));
  await Deno.symlink(target, path);
  await assert.rejects(() => readStatus(path), (e) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /status\.json" is a symlink|status\.json": is a symlink/);
    return true;
  });
  await Deno.remove(path);
  await Deno.mkdir(path);
  await assert.rejects(() => readStatus(path), /is not a regular file/);
});

Deno.test("status store serialises saves so the newest state lands last", async () => {
  const writes: string[] = [];
  let active = 0;
  let overlapped = false;
  const fs: FileSystem = {
    ...denoFileSystem,
    async writeFileAtomic(_path, data) {
      active++;
      if (active > 1) overlapped = true;
      // The first write is the slowest: without ordering it would land last.
      await new Promise((r) => setTimeout(r, writes.length === 0 ? 30 : 1));
      writes.push(JSON.parse(data).sequence);
      active--;
    },
  };
  const store = new StatusStore("/nonexistent/status.json", emptyStatus("a"), { fs });
  store.current.sequence = 1;
  const first = store.save();
  store.current.sequence = 2;
  const second = store.save();
  await Promise.all([first, second]);
  assert.equal(overlapped, false);
  assert.deepEqual(writes.at(-1), 2);
});

Deno.test("status text shows agent, platform, success, failures, error, next attempt, expiry, repairs", () => {
  const text = renderStatusText(IDENTITY, {
    ...failingStatus(),
    stopped: {
      at: "2026-11-29T11:59:01.000Z",
      reason: "credential_rejected",
      message: "Cannot send heartbeat: platform answered 401 credential_revoked",
    },
  }, NOW);
  for (
    const expected of [
      /^Agent: +agent-7$/m,
      /^Platform: +https:\/\/platform\.example\.com\/$/m,
      /^Last success: +2026-11-29T11:00:00\.000Z \(60 min ago\)$/m,
      /^Failures: +4 consecutive, failing since 2026-11-29T11:01:00\.000Z$/m,
      /^Last error: +http 503 maintenance: platform answered 503 maintenance: back soon$/m,
      /^Next attempt: +none scheduled$/m,
      /^Certificate: +expires 2026-12-02T12:00:00\.000Z \(in 3 days\) \(expires within 7 days\)$/m,
      /^Permissions: +repaired \/state\/identity\.json: 0644 -> 0600$/m,
      /^Stopped: +.*credential_rejected.*401 credential_revoked$/m,
      /^Sequence: +42$/m,
    ]
  ) {
    assert.match(text, expected);
  }
  const running = renderStatusText(IDENTITY, failingStatus(), NOW);
  assert.match(running, /^Next attempt: +2026-11-29T12:00:30\.000Z \(in 30 s\)$/m);
  const fresh = renderStatusText(IDENTITY, null, NOW);
  assert.match(fresh, /^Heartbeats: +none yet/m);
});

Deno.test("status --json view is flat, with identity facts over a stale status", () => {
  const view = statusView(IDENTITY, failingStatus());
  assert.equal(view.agent_id, "agent-7");
  assert.equal(view.enrolled, true);
  assert.equal(view.consecutive_failures, 4);
  assert.equal(view.certificate_expires_at, IDENTITY.certificate_not_after);
  const other = statusView({ ...IDENTITY, agent_id: "agent-9" }, failingStatus());
  assert.equal(other.consecutive_failures, 0);
  assert.equal(other.last_success_at, null);
  assert.equal(other.agent_id, "agent-9");
});

Deno.test("status exits 5 when not enrolled, and still prints enrolled: false and enrolled 0", async () => {
  await using dir = await tempDir();
  const text = await runAgent(["--state-dir", dir.path, "status"]);
  assert.equal(text.code, 5, text.stderr);
  assert.equal(text.stdout, "");
  assert.equal(
    text.stderr,
    `error: Not enrolled: no identity in ${
      JSON.stringify(dir.path)
    }; run "oneconnect-agent enroll --url <platform-url>"\n`,
  );
  const json = await runAgent(["--state-dir", dir.path, "status", "--json"]);
  assert.equal(json.code, 5, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), {
    schema_version: 1,
    agent_version: denoJson.version,
    enrolled: false,
    state_dir: dir.path,
    running: false,
  });
  assert.equal(json.stderr, text.stderr);
  const prom = await runAgent(["--state-dir", dir.path, "status", "--format", "prometheus"]);
  assert.equal(prom.code, 5, prom.stderr);
  assert.match(prom.stdout, /^oneconnect_agent_enrolled 0$/m);
  assert.match(
    prom.stdout,
    new RegExp(`^oneconnect_agent_info\\{version="${denoJson.version}",agent_id=""\\} 1$`, "m"),
  );
});

Deno.test("status report reads the identity, its status and the lock's holder; health says what fails", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const absent = await readStatusReport(stateDir, createLogger({ level: "error" }));
  assert.equal(absent.enrolled, false);
  assert.ok(!absent.enrolled && absent.error instanceof NotEnrolledError);
  assert.deepEqual(notEnrolledView(stateDir), {
    schema_version: 1,
    agent_version: denoJson.version,
    enrolled: false,
    state_dir: stateDir,
    running: false,
  });

  const store = new IdentityStore(stateDir);
  const identity = await makeIdentity(await createDevCa(), { agentId: "agent-7" });
  await store.save(identity);
  await new StatusStore(statusPath(stateDir), failingStatus()).save();
  const idle = await readStatusReport(stateDir, createLogger({ level: "error" }));
  assert.ok(idle.enrolled);
  assert.equal(idle.identity.agent_id, "agent-7");
  assert.equal(idle.status?.consecutive_failures, 4);
  assert.deepEqual(idle.process, { running: false, pid: null, command: null });
  const notRunning = healthProblem(idle);
  assert.equal(notRunning?.exitCode, 9);
  assert.match(notRunning?.message ?? "", /^Agent "agent-7" is not running \(no process holds /);

  await using _lock = await acquireStateLock(stateDir, {
    command: "run",
    action: "Cannot run",
    logger: createLogger({ level: "error" }),
  });
  const running = await readStatusReport(stateDir, createLogger({ level: "error" }));
  assert.ok(running.enrolled);
  assert.deepEqual(running.process, { running: true, pid: Deno.pid, command: "run" });
  const failing = healthProblem(running);
  assert.equal(failing?.exitCode, 8);
  assert.equal(
    failing?.message,
    'Agent "agent-7" is running but its heartbeats are failing (4 consecutive: platform answered 503 maintenance: back soon)',
  );
  await new StatusStore(statusPath(stateDir), emptyStatus("agent-7")).save();
  const healthy = await readStatusReport(stateDir, createLogger({ level: "error" }));
  assert.ok(healthy.enrolled);
  assert.equal(healthProblem(healthy), null);
});
