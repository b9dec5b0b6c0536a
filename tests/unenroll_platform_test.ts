import assert from "node:assert/strict";
import { join } from "node:path";
import { InterruptedError, PlatformError, ShutdownRequest } from "../src/errors.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import type { UnenrollDeps } from "../src/enrollment/unenroll.ts";
import { unenrollCommand } from "../src/commands/unenroll.ts";
import { createDevCa, startDevPlatform } from "../tasks/dev_platform/server.ts";
import { issueServerCertificate } from "../tasks/dev_platform/dev_ca.ts";
import { enrollAgent, runAgent, tempDir } from "./_support/helpers.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";
import { testContext } from "./_support/context_fixture.ts";

const ca = await createDevCa();

async function enrolled(path: string): Promise<IdentityStore> {
  const store = new IdentityStore(join(path, "state"));
  await store.save(await makeIdentity(ca, { agentId: "agent-7" }));
  return store;
}

/** A fake platform client; `answer` decides how the DELETE ends. */
function fakeClient(store: IdentityStore, answer: () => Promise<void>) {
  const calls: Array<{ agentId: string; timeoutMs: number; identityPresent: boolean }> = [];
  let closed = 0;
  const createClient: UnenrollDeps["createClient"] = (identity, _ctx, timeoutMs) => ({
    async unenroll(agentId: string) {
      assert.equal(agentId, identity.agent_id);
      calls.push({ agentId, timeoutMs, identityPresent: await store.exists() });
      return await answer();
    },
    close: () => void closed++,
  });
  return { createClient, calls, closed: () => closed };
}

function httpError(status: number, code: string): PlatformError {
  return new PlatformError(`platform answered ${status} ${code}: gone`, {
    kind: "http",
    httpStatus: status,
    code,
    contentType: "application/problem+json",
  });
}

Deno.test("unenroll --yes deletes the agent on the platform, then removes the local files", async () => {
  await using dir = await tempDir();
  const store = await enrolled(dir.path);
  const fake = fakeClient(store, () => Promise.resolve());
  const { ctx, out } = testContext(store.stateDir);
  await unenrollCommand(ctx, { yes: true, localOnly: false }, { createClient: fake.createClient });
  assert.deepEqual(fake.calls, [{ agentId: "agent-7", timeoutMs: 10_000, identityPresent: true }]);
  assert.equal(fake.closed(), 1);
  assert.deepEqual(out, [
    'platform: deleted agent "agent-7"\n',
    `removed ${store.identityPath}\n`,
    "unenrolled agent-7\n",
  ]);
  assert.equal(await store.exists(), false);
});

Deno.test("unenroll bounds the platform call by the shorter of 10 s and the request timeout", async () => {
  await using dir = await tempDir();
  const store = await enrolled(dir.path);
  const fake = fakeClient(store, () => Promise.resolve());
  const { ctx } = testContext(store.stateDir, { config: { timeoutSeconds: 4 } });
  await unenrollCommand(ctx, { yes: true, localOnly: false }, { createClient: fake.createClient });
  assert.equal(fake.calls[0]?.timeoutMs, 4000);
});

Deno.test("unenroll takes 401, 404 and 410 as already gone", async () => {
  for (
    const [status, code] of [[401, "credential_revoked"], [404, "agent_unknown"], [
      410,
      "agent_unknown",
    ]] as const
  ) {
    await using dir = await tempDir();
    const store = await enrolled(dir.path);
    const fake = fakeClient(store, () => Promise.reject(httpError(status, code)));
    const { ctx, out } = testContext(store.stateDir);
    await unenrollCommand(ctx, { yes: true, localOnly: false }, {
      createClient: fake.createClient,
    });
    assert.equal(
      out[0],
      `platform: agent "agent-7" is already gone (platform answered ${status} ${code}: gone)\n`,
    );
    assert.equal(out.at(-1), "unenrolled agent-7\n");
    assert.equal(await store.exists(), false);
  }
});

Deno.test("unenroll removes the local identity even when the platform call fails", async () => {
  const failures = [
    new PlatformError('cannot connect to "127.0.0.1:1": connection refused', { kind: "network" }),
    httpError(503, "unavailable"),
    // A proxy demanding a certificate says nothing about whether the agent still exists.
    httpError(401, "client_certificate_required"),
    // An edge's HTML 404 (a mis-routed ingress) is not the platform saying the agent is gone.
    new PlatformError('platform answered 404 with "text/html", not JSON', {
      kind: "http",
      httpStatus: 404,
      contentType: "text/html",
    }),
    new Error("something unexpected"),
  ];
  for (const failure of failures) {
    await using dir = await tempDir();
    const store = await enrolled(dir.path);
    const fake = fakeClient(store, () => Promise.reject(failure));
    const { ctx, out } = testContext(store.stateDir);
    await unenrollCommand(ctx, { yes: true, localOnly: false }, {
      createClient: fake.createClient,
    });
    assert.equal(
      out[0],
      `platform: cannot unenroll there (${failure.message}); ask an administrator to delete agent "agent-7"\n`,
    );
    assert.equal(await store.exists(), false);
  }
  {
    // A client that cannot even be built (unusable pin) is a failure like any other.
    await using dir = await tempDir();
    const store = await enrolled(dir.path);
    const { ctx, out } = testContext(store.stateDir);
    await unenrollCommand(ctx, { yes: true, localOnly: false }, {
      createClient: () => {
        throw new PlatformError("cannot set up TLS", { kind: "tls" });
      },
    });
    assert.match(out[0]!, /^platform: cannot unenroll there \(cannot set up TLS\)/);
    assert.equal(await store.exists(), false);
  }
});

Deno.test("unenroll --local-only never contacts the platform", async () => {
  await using dir = await tempDir();
  const store = await enrolled(dir.path);
  const { ctx, out } = testContext(store.stateDir);
  await unenrollCommand(ctx, { yes: true, localOnly: true }, {
    createClient: () => {
      throw new Error("must not be called");
    },
  });
  assert.equal(out[0], "platform: not contacted (--local-only)\n");
  assert.equal(await store.exists(), false);
});

Deno.test("unenroll interrupted during the platform call removes nothing", async () => {
  await using dir = await tempDir();
  const store = await enrolled(dir.path);
  const stop = new AbortController();
  const fake = fakeClient(store, () => {
    stop.abort(new ShutdownRequest("SIGTERM"));
    return Promise.reject(new PlatformError("request was aborted", { kind: "aborted" }));
  });
  const { ctx, out } = testContext(store.stateDir, { shutdown: stop.signal });
  const e = await unenrollCommand(ctx, { yes: true, localOnly: false }, {
    createClient: fake.createClient,
  }).then(() => null, (e) => e);
  assert.ok(e instanceof InterruptedError);
  assert.equal(e.exitCode, 143);
  assert.equal(e.message, "Cannot unenroll: interrupted; nothing was removed");
  assert.deepEqual(out, []);
  assert.equal(await store.exists(), true);
});

// End to end: the real CLI against the dev platform.

Deno.test("unenroll --yes makes the platform forget the agent; its old identity then gets 410", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const agentId = await enrollAgent(platform, stateDir);
  const saved = await Deno.readTextFile(join(stateDir, "identity.json"));

  const result = await runAgent(["--state-dir", stateDir, "unenroll", "--yes"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    result.stdout,
    `platform: deleted agent "${agentId}"\nremoved ${join(stateDir, "identity.json")}\nremoved ${
      join(stateDir, "status.json")
    }\nunenrolled ${agentId}\n`,
  );
  assert.equal(platform.agents().find((a) => a.agent_id === agentId)?.deleted, true);

  // Someone restores the old identity from a backup: the platform no longer knows it.
  await Deno.writeTextFile(join(stateDir, "identity.json"), saved, { mode: 0o600 });
  const beat = await runAgent(["--state-dir", stateDir, "run", "--once"]);
  assert.equal(beat.code, 3, beat.stderr);
  assert.match(beat.stderr, /platform answered 410 agent_unknown/);
  assert.equal(platform.heartbeats(agentId).length, 0);

  // Unenrolling it again reports it as already gone and still cleans up.
  const again = await runAgent(["--state-dir", stateDir, "unenroll", "--yes"]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(
    again.stdout,
    new RegExp(`^platform: agent "${agentId}" is already gone \\(platform answered 410`),
  );
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("unenroll --local-only keeps the platform record; an unreachable platform is no blocker", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  let agentId: string;
  {
    await using platform = await startDevPlatform({ quiet: true });
    agentId = await enrollAgent(platform, stateDir);
    const local = await runAgent(["--state-dir", stateDir, "unenroll", "--yes", "--local-only"]);
    assert.equal(local.code, 0, local.stderr);
    assert.match(local.stdout, /^platform: not contacted \(--local-only\)\n/);
    assert.equal(platform.agents()[0]?.deleted, false);
    agentId = await enrollAgent(platform, stateDir);
  }
  // The platform is gone now.
  const result = await runAgent(["--state-dir", stateDir, "unenroll", "--yes"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stdout,
    new RegExp(
      `^platform: cannot unenroll there \\(.*connection refused\\); ask an administrator to delete agent "${agentId}"\\n`,
    ),
  );
  assert.match(result.stdout, /\nunenrolled /);
  assert.match(result.stderr, /WARN +Cannot unenroll on the platform/);
  assert.equal(
    await Deno.lstat(join(stateDir, "identity.json")).then(() => true, () => false),
    false,
  );
});

Deno.test("unenroll gives up on a platform that never answers after 10 s, even with a 600 s request timeout", async () => {
  await using dir = await tempDir();
  const server = await issueServerCertificate(ca);
  let arrivedAt = 0;
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  // A real HTTPS server that accepts the DELETE and holds it until the test ends.
  await using platform = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: server.certPem,
    key: server.keyPem,
    onListen: () => {},
  }, async (req) => {
    if (req.method === "DELETE") arrivedAt = performance.now();
    await held;
    return new Response(null, { status: 204 });
  });
  try {
    const store = new IdentityStore(join(dir.path, "state"));
    await store.save(
      await makeIdentity(ca, {
        agentId: "agent-7",
        platformUrl: `https://127.0.0.1:${platform.addr.port}/`,
      }),
    );
    await Deno.writeTextFile(join(store.stateDir, "agent.json"), '{"timeout_seconds": 600}');
    const result = await runAgent(["--state-dir", store.stateDir, "unenroll", "--yes"]);
    const afterArrival = performance.now() - arrivedAt;
    assert.ok(arrivedAt > 0, "the DELETE reached the server");
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^platform: cannot unenroll there \(.*\); ask an administrator to delete agent "agent-7"\n/,
    );
    assert.match(result.stdout, /\nunenrolled /);
    // The limit, not the 600 s request timeout, ended the wait (loose above: 2 busy cores).
    assert.ok(afterArrival >= 9_000, `gave up ${Math.round(afterArrival)} ms after the request`);
    assert.ok(afterArrival < 20_000, `waited ${Math.round(afterArrival)} ms after the request`);
    assert.equal(await store.exists(), false);
  } finally {
    release();
  }
});

Deno.test("unenroll on a cloned identity removes only the local copy: the platform keeps the original", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(join(dir.path, "state"));
  const identity = await makeIdentity(ca, { agentId: "agent-7" });
  await store.save({ ...identity, machine_id: "0123456789abcdef0123456789abcdef" });
  const fake = fakeClient(store, () => Promise.resolve());
  const { ctx, out } = testContext(store.stateDir);
  await unenrollCommand(ctx, { yes: true, localOnly: false }, {
    createClient: fake.createClient,
    machineId: () => Promise.resolve("fedcba9876543210fedcba9876543210"),
  });
  assert.deepEqual(fake.calls, [], "a clone must not delete the original's registration");
  assert.match(out[0]!, /^platform: not contacted \(this identity was enrolled on another host/);
  assert.equal(await store.exists(), false);
  // The same identity on its own host (or one without a machine id) still asks the platform.
  for (const host of ["0123456789abcdef0123456789abcdef", null]) {
    await store.save({ ...identity, machine_id: "0123456789abcdef0123456789abcdef" });
    await unenrollCommand(ctx, { yes: true, localOnly: false }, {
      createClient: fake.createClient,
      machineId: () => Promise.resolve(host),
    });
  }
  assert.equal(fake.calls.length, 2);
});
