// The heartbeat service (`run`) called in-process: a fake platform on 127.0.0.1 (plain HTTP, which
// an identity may use on loopback) and a temp state directory.
import assert from "node:assert/strict";
import { join } from "node:path";
import { CredentialRejectedError, NotEnrolledError } from "../src/errors.ts";
import { runHeartbeatService } from "../src/heartbeat/service.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { LOCK_FILE_NAME } from "../src/state/state_lock.ts";
import { readStatus, statusPath } from "../src/state/status_store.ts";
import { TelemetryCollector } from "../src/telemetry/collector.ts";
import type { Host } from "../src/wire/telemetry_wire.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { testContext } from "./_support/context_fixture.ts";
import { exists, rejectsWith, tempDir } from "./_support/helpers.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";

const ca = await createDevCa();

/** A platform that accepts every heartbeat and remembers what it got. */
function fakePlatform() {
  const requests: Array<{ method: string; path: string; auth: string | null; body: unknown }> = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    requests.push({
      method: req.method,
      path: new URL(req.url).pathname,
      auth: req.headers.get("authorization"),
      body: await req.json().catch(() => null),
    });
    return Response.json({});
  });
  return { server, requests, url: `http://127.0.0.1:${server.addr.port}/` };
}

/** A collector that reports `machineId` as this host's. */
class HostWithMachineId extends TelemetryCollector {
  constructor(readonly machineId: string) {
    super();
  }
  override async host(): Promise<Host> {
    return { ...(await super.host()), machine_id: this.machineId };
  }
}

Deno.test("heartbeat service sends one beat with once through the identity's client and records it", async () => {
  await using dir = await tempDir();
  const fake = fakePlatform();
  await using _fake = fake.server;
  const store = new IdentityStore(join(dir.path, "state"));
  const identity = await makeIdentity(ca, { platformUrl: fake.url });
  await store.save(identity);
  const { ctx, out } = testContext(store.stateDir);

  await runHeartbeatService(ctx, { once: true });

  assert.equal(fake.requests.length, 1);
  const [beat] = fake.requests;
  assert.equal(beat!.method, "POST");
  assert.equal(beat!.path, "/api/v1/agents/agent-1/heartbeats");
  assert.equal(beat!.auth, `Bearer ${identity.service_account_token}`);
  assert.equal((beat!.body as { sequence: number }).sequence, 1);
  assert.deepEqual(out, [], "the service prints nothing on stdout");
  const status = await readStatus(statusPath(store.stateDir));
  assert.equal(status?.agent_id, "agent-1");
  assert.equal(status?.consecutive_failures, 0);
  assert.ok(status?.last_success_at);
  assert.equal(status?.certificate_expires_at, identity.certificate_not_after);
  assert.ok(status?.renewal?.next_at, "the renewal scheduler recorded its plan");
  assert.equal(await exists(join(store.stateDir, LOCK_FILE_NAME)), false, "lock released");
});

Deno.test("heartbeat service refuses a cloned identity without a token: nothing sent, stopped in status", async () => {
  await using dir = await tempDir();
  const fake = fakePlatform();
  await using _fake = fake.server;
  const store = new IdentityStore(join(dir.path, "state"));
  const identity = {
    ...(await makeIdentity(ca, { platformUrl: fake.url })),
    machine_id: "3d1219c7c4c5404aaa1f6d2a48adfda4",
  };
  await store.save(identity);
  const { ctx } = testContext(store.stateDir);

  const error = await rejectsWith(
    runHeartbeatService(ctx, { once: false }, {
      collector: () => new HostWithMachineId("ffffffffffffffffffffffffffffffff"),
    }),
    CredentialRejectedError,
  );
  assert.equal(error.exitCode, 3);
  assert.match(
    error.message,
    /^Refusing to send heartbeats: identity was enrolled on another host/,
  );
  assert.equal(fake.requests.length, 0);
  const status = await readStatus(statusPath(store.stateDir));
  assert.equal(status?.stopped?.reason, "identity_cloned");
  assert.equal(status?.stopped?.message, error.message);
  assert.deepEqual(await store.load(), identity, "the copied identity is kept without a token");
  assert.equal(await exists(join(store.stateDir, LOCK_FILE_NAME)), false, "lock released");
});

Deno.test("heartbeat service with neither identity nor token exits 5 and tells monitoring enrolled 0", async () => {
  await using dir = await tempDir();
  const metricsFile = join(dir.path, "agent.prom");
  const { ctx } = testContext(join(dir.path, "state"), { config: { metricsFile } });
  const error = await rejectsWith(runHeartbeatService(ctx, { once: true }), NotEnrolledError);
  assert.equal(error.exitCode, 5);
  assert.match(error.message, /^Not enrolled: provide an enrollment token in /);
  assert.match(await Deno.readTextFile(metricsFile), /^oneconnect_agent_enrolled 0$/m);
});

Deno.test("heartbeat service replaces a clone's identity with a provisioned token, keeping the start audit's repairs", async () => {
  await using dir = await tempDir();
  const platform = await startDevPlatform({ quiet: true });
  try {
    const store = new IdentityStore(join(dir.path, "state"));
    const copied = {
      ...(await makeIdentity(ca, { platformUrl: platform.url.href })),
      machine_id: "3d1219c7c4c5404aaa1f6d2a48adfda4",
    };
    await store.save(copied);
    await Deno.chmod(store.identityPath, 0o644);
    const { ctx } = testContext(store.stateDir, {
      config: { platformUrl: platform.url, caFile: platform.caFile },
      env: { ONECONNECT_ENROLLMENT_TOKEN: platform.mintEnrollmentToken() },
    });

    await runHeartbeatService(ctx, { once: true }, {
      collector: () => new HostWithMachineId("ffffffffffffffffffffffffffffffff"),
    });

    const replaced = await store.load();
    assert.notEqual(replaced.agent_id, copied.agent_id);
    assert.equal(platform.heartbeats(replaced.agent_id).length, 1);
    const status = await readStatus(statusPath(store.stateDir));
    assert.equal(status?.agent_id, replaced.agent_id);
    assert.deepEqual(
      status?.permission_repairs.map((r) => [r.path, r.old_mode, r.new_mode]),
      [[store.identityPath, "0644", "0600"]],
    );
  } finally {
    await platform.close();
  }
});
