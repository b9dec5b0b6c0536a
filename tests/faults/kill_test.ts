/**
 * kill -9 at each phase of `enroll` and `run`: afterwards the state directory holds the old or the
 * new complete identity (never a mix), temp files are owner-only, and `status` and `run` work.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { IdentityStore } from "../../src/state/identity_store.ts";
import { StatusSchema } from "../../src/state/status_store.ts";
import { delay, Harness, HAS_STRACE, listTree } from "../_support/fault_helpers.ts";
import { enrollArgs, skipWithout, until } from "../_support/helpers.ts";

/** The identity as the agent loads it (complete and self-consistent), or null when absent. */
async function loadIdentity(h: Harness): Promise<{ agent_id: string } | null> {
  const store = new IdentityStore(h.stateDir);
  if (!(await store.exists())) return null;
  return await store.load();
}

/** Temp files left in the state dir (a kill between create and rename leaves one). */
async function tempFiles(h: Harness): Promise<string[]> {
  return [...(await listTree(h.stateDir))].filter(([name]) => name.endsWith(".tmp")).map((
    [name, info],
  ) => {
    assert.equal(info.mode, 0o600, `${name} has mode ${info.mode.toString(8)}`);
    return name;
  });
}

/** `status --json` agrees with the identity and `run --once` sends a higher sequence. */
async function assertConsistent(h: Harness, agentId: string): Promise<void> {
  const status = await h.cli(["status", "--json"]);
  assert.equal(status.code, 0, status.stderr);
  assert.equal(JSON.parse(status.stdout).agent_id, agentId);
  const once = await h.cli(["run", "--once"]);
  assert.equal(once.code, 0, once.stderr);
  const sequences = h.platform.heartbeats(agentId).map((r) => r.sequence);
  for (let i = 1; i < sequences.length; i++) {
    assert.ok(sequences[i]! > sequences[i - 1]!, `sequence not increasing: ${sequences}`);
  }
  const saved = StatusSchema.parse(await h.status());
  assert.equal(saved.agent_id, agentId);
  assert.equal(saved.sequence, sequences.at(-1));
}

Deno.test("kill -9 after key generation: no identity, token unspent; with --force the old one stays", async () => {
  await using h = await Harness.open();
  // Fresh state dir: killed once the key and CSR exist, before the request leaves.
  h.platform.injectFault({ route: "enroll", delayMs: 5_000, times: 1 });
  const token = await h.tokenFile();
  {
    await using run = h.spawn(enrollArgs(h.platform, "--token-file", token));
    await run.waitForLine(/"msg":"Contacting platform"/);
    run.kill("SIGKILL");
    const end = await run.exited();
    assert.notEqual(end.code, 0);
  }
  assert.equal(await loadIdentity(h), null);
  assert.deepEqual(await tempFiles(h), []);
  const status = await h.cli(["status"]);
  assert.equal(status.code, 5, status.stderr);
  h.platform.clearFaults();
  // A request that had reached the platform was held 5 s and its client was gone: not enrolled.
  const again = await h.cli(enrollArgs(h.platform, "--token-file", token));
  assert.equal(again.code, 0, again.stderr);
  const first = await loadIdentity(h);
  assert.ok(first);
  h.secrets.addIdentity(await h.identity());

  // Replacing: killed right after the key is made; the old identity stays and works.
  const before = await Deno.readTextFile(h.identityPath);
  {
    await using run = h.spawn(
      enrollArgs(h.platform, "--token-file", await h.tokenFile(), "--force"),
    );
    await run.waitForLine(/"msg":"Generating key"/);
    run.kill("SIGKILL");
    await run.exited();
  }
  assert.equal(await Deno.readTextFile(h.identityPath), before);
  assert.deepEqual(await tempFiles(h), []);
  await assertConsistent(h, first.agent_id);
});

Deno.test("kill -9 mid-request (platform holding the enrollment): old identity intact, token reported spent", async () => {
  await using h = await Harness.open();
  const old = await h.enroll();
  const before = await Deno.readTextFile(h.identityPath);
  h.platform.injectFault({ route: "enroll", delayMs: 1_500, times: 1 });
  const requests = h.platform.requestCount;
  const token = await h.tokenFile();
  {
    await using run = h.spawn(enrollArgs(h.platform, "--force", "--token-file", token));
    await until(() => h.platform.requestCount > requests, "the enrollment request to arrive");
    run.kill("SIGKILL");
    await run.exited();
  }
  assert.equal(await Deno.readTextFile(h.identityPath), before);
  assert.deepEqual(await tempFiles(h), []);
  await assertConsistent(h, old.agent_id as string);
  // The platform finishes the held request; whether it spent the token depends on whether the
  // body had arrived. Either way a retry with the same token is answered consistently.
  await delay(1_700);
  const agents = h.platform.agents().length;
  const retry = await h.cli(enrollArgs(h.platform, "--force", "--token-file", token));
  if (agents === 2) {
    assert.equal(retry.code, 3, retry.stderr);
    assert.match(
      retry.stderr,
      /error: Cannot enroll: platform answered 409 .*ask for a new enrollment token/,
    );
    assert.equal(await Deno.readTextFile(h.identityPath), before);
  } else {
    assert.equal(retry.code, 0, retry.stderr);
  }
});

/** The parsed content of the first state-dir file whose name matches `pattern`, if complete. */
async function completeFile(h: Harness, pattern: RegExp): Promise<Record<string, unknown> | null> {
  for (const [name] of await listTree(h.stateDir)) {
    if (!pattern.test(name)) continue;
    try {
      return JSON.parse(await Deno.readTextFile(join(h.stateDir, name)));
    } catch {
      return null; // still being written, or renamed away meanwhile
    }
  }
  return null;
}

// How long strace holds each fsync and rename: the test sees a step on disk and must kill the agent
// before the next one. Wide, since a busy machine can take hundreds of ms between the two.
const SLOW_MS = 1_200;

Deno.test({
  name:
    "kill -9 at each step of the identity write (strace-slowed): old or new identity, never half",
  ignore: skipWithout(HAS_STRACE),
  async fn() {
    await using h = await Harness.open();
    const old = await h.enroll();
    const once = await h.cli(["run", "--once"]);
    assert.equal(once.code, 0, once.stderr);
    const before = await Deno.readTextFile(h.identityPath);

    // While probing the state dir, before anything is sent: old identity, token unspent.
    let agents = h.platform.agents().length;
    {
      await using run = h.spawnSlowed(
        enrollArgs(h.platform, "--token-file", await h.tokenFile(), "--force"),
        SLOW_MS,
      );
      await until(
        async () =>
          (await listTree(h.stateDir)).has(".enroll-write-probe") ||
          [...(await listTree(h.stateDir)).keys()].some((n) => n.startsWith("..enroll")),
        "the probe",
      );
      run.kill("SIGKILL");
      await run.exited();
    }
    assert.equal(await Deno.readTextFile(h.identityPath), before);
    assert.equal(h.platform.agents().length, agents);
    await assertConsistent(h, old.agent_id as string);

    // The new identity is complete in its temp file, not yet renamed: the old one stays, the
    // temp file is left owner-only, and the token is spent (an agent nobody holds).
    agents = h.platform.agents().length;
    {
      await using run = h.spawnSlowed(
        enrollArgs(h.platform, "--token-file", await h.tokenFile(), "--force"),
        SLOW_MS,
      );
      await until(
        async () => (await completeFile(h, /^\.identity\.json\.[0-9a-f]+\.tmp$/)) !== null,
        "a complete identity temp file",
      );
      run.kill("SIGKILL");
      await run.exited();
    }
    assert.equal(await Deno.readTextFile(h.identityPath), before);
    assert.equal(h.platform.agents().length, agents + 1);
    assert.ok((await tempFiles(h)).some((n) => /^\.identity\.json\.[0-9a-f]+\.tmp$/.test(n)));
    await assertConsistent(h, old.agent_id as string);

    // Renamed, directory not yet synced, old status not yet removed: the new identity is whole.
    agents = h.platform.agents().length;
    {
      await using run = h.spawnSlowed(
        enrollArgs(h.platform, "--token-file", await h.tokenFile(), "--force"),
        SLOW_MS,
      );
      await until(async () => (await h.identity()).agent_id !== old.agent_id, "the rename");
      run.kill("SIGKILL");
      await run.exited();
    }
    const identity = await loadIdentity(h);
    assert.ok(identity);
    assert.notEqual(identity.agent_id, old.agent_id);
    assert.equal(h.platform.agents().length, agents + 1);
    assert.equal((await h.status()).agent_id, old.agent_id, "the old status was removed early");
    h.secrets.addIdentity(await h.identity());
    await assertConsistent(h, identity.agent_id);
  },
});

Deno.test("kill -9 at random moments of enroll --force: always one complete identity", async () => {
  await using h = await Harness.open();
  const seen = new Set<string>([(await h.enroll()).agent_id as string]);
  let replaced = 0;
  for (let i = 0; i < 8; i++) {
    const current = (await loadIdentity(h))!.agent_id;
    await using run = h.spawn(
      enrollArgs(h.platform, "--token-file", await h.tokenFile(), "--force"),
    );
    await run.waitForLine(/"msg":"Contacting platform"/);
    await delay(Math.floor(Math.random() * 80));
    run.kill("SIGKILL");
    await run.exited();
    const identity = await loadIdentity(h);
    assert.ok(identity, `iteration ${i}: no identity`);
    if (identity.agent_id !== current) {
      replaced++;
      assert.ok(!seen.has(identity.agent_id), "an identity came back");
      assert.ok(h.platform.agents().some((a) => a.agent_id === identity.agent_id));
      h.secrets.addIdentity(await h.identity());
    }
    seen.add(identity.agent_id);
    await tempFiles(h);
  }
  console.log(`random kills: ${replaced} of 8 replaced the identity`);
  await assertConsistent(h, (await loadIdentity(h))!.agent_id);
});

Deno.test("kill -9 of run mid-request: status stays valid and the sequence never repeats", async () => {
  await using h = await Harness.open();
  const agentId = (await h.enroll()).agent_id as string;
  const first = await h.cli(["run", "--once"]);
  assert.equal(first.code, 0, first.stderr);
  // Held long enough that the kill surely lands while the request is in flight.
  h.platform.injectFault({ route: "heartbeat", delayMs: 3_000, times: 1 });
  const requests = h.platform.requestCount;
  const recorded = h.platform.heartbeats(agentId).length;
  let arrived = 0;
  {
    await using run = h.spawn(["run", "--interval", "1"]);
    await until(() => h.platform.requestCount > requests, "the heartbeat to arrive");
    arrived = performance.now();
    run.kill("SIGKILL");
    await run.exited();
  }
  assert.equal(h.platform.heartbeats(agentId).length, recorded, "the kill came after the answer");
  StatusSchema.parse(await h.status());
  // Let the platform finish the held request (it may record it after the agent died).
  await delay(Math.max(0, arrived + 3_500 - performance.now()));
  await assertConsistent(h, agentId);
});

Deno.test({
  name:
    "kill -9 of run at each step of the status write (strace-slowed): status valid, sequence rises",
  ignore: skipWithout(HAS_STRACE),
  async fn() {
    await using h = await Harness.open();
    const agentId = (await h.enroll()).agent_id as string;
    const first = await h.cli(["run", "--once"]);
    assert.equal(first.code, 0, first.stderr);
    const beats = () => h.platform.heartbeats(agentId).length;

    // --once reserves a block of sequence numbers (a status write) before sending; killed while
    // writing it: nothing sent, status as it was.
    let before = await h.status();
    let sent = beats();
    {
      await using run = h.spawnSlowed(["run", "--once"], SLOW_MS);
      await until(
        async () => (await completeFile(h, /^\.status\.json\.[0-9a-f]+\.tmp$/)) !== null,
        "the reservation temp file",
      );
      run.kill("SIGKILL");
      await run.exited();
    }
    assert.equal(beats(), sent);
    assert.deepEqual(await h.status(), before);
    await assertConsistent(h, agentId);

    // After the platform took the heartbeat, before the status is saved: the reservation on
    // disk covers the sequence just sent, so it is never sent again.
    before = await h.status();
    sent = beats();
    {
      await using run = h.spawnSlowed(["run", "--once"], SLOW_MS);
      await until(() => beats() > sent, "the heartbeat");
      run.kill("SIGKILL");
      await run.exited();
    }
    assert.equal(beats(), sent + 1);
    const reserved = StatusSchema.parse(await h.status());
    assert.equal(reserved.sequence, before.sequence);
    assert.ok(reserved.sequence_reserved >= h.platform.heartbeats(agentId).at(-1)!.sequence);
    await assertConsistent(h, agentId);

    // Status renamed into place, directory not yet synced.
    before = await h.status();
    {
      await using run = h.spawnSlowed(["run", "--once"], SLOW_MS);
      await until(async () => (await h.status()).sequence !== before.sequence, "the status");
      run.kill("SIGKILL");
      await run.exited();
    }
    const after = StatusSchema.parse(await h.status());
    assert.equal(after.sequence, h.platform.heartbeats(agentId).at(-1)!.sequence);
    await tempFiles(h);
    await assertConsistent(h, agentId);
  },
});

Deno.test("kill -9 of run --interval 1 at random moments: status always valid, sequence strictly rises", async () => {
  await using h = await Harness.open();
  const agentId = (await h.enroll()).agent_id as string;
  for (let i = 0; i < 6; i++) {
    await using run = h.spawn(["run", "--interval", "1"]);
    await run.waitForLine(/"msg":"Started"/);
    await delay(Math.floor(Math.random() * 1500));
    run.kill("SIGKILL");
    await run.exited();
    await h.status().then((s) => StatusSchema.parse(s), (e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    await tempFiles(h);
  }
  await assertConsistent(h, agentId);
});
