/**
 * Disk faults: a read-only or full state directory, a missing parent, state files replaced by a
 * directory or a symlink, and a full disk through the FileSystem seam. The previous identity must
 * stay usable in every case.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { enrollCommand } from "../../src/commands/enroll.ts";
import { AgentError, UsageError } from "../../src/errors.ts";
import { denoFileSystem, type FileSystem } from "../../src/file_system.ts";
import { heartbeatLoop } from "../../src/heartbeat/loop.ts";
import { HeartbeatSchedule } from "../../src/heartbeat/schedule.ts";
import { IdentityStore } from "../../src/state/identity_store.ts";
import { createLogger } from "../../src/log.ts";
import { emptyStatus, StatusStore } from "../../src/state/status_store.ts";
import {
  assertFails,
  CAN_MOUNT,
  fillDisk,
  Harness,
  listTree,
  mountReadOnly,
  mountTmpfs,
} from "../_support/fault_helpers.ts";
import { testContext } from "../_support/context_fixture.ts";
import { enrollArgs, rejectsWith, skipWithout } from "../_support/helpers.ts";

const ENOSPC = "No space left on device (os error 28)";

/** A file system whose atomic writes to paths matching `full` fail as a full disk would. */
function diskFullFs(full: (path: string) => boolean): FileSystem & { refused: string[] } {
  const refused: string[] = [];
  return {
    ...denoFileSystem,
    refused,
    async writeFileAtomic(path, data, mode) {
      if (full(path)) {
        refused.push(path);
        throw new Error(`${ENOSPC}: write '${path}'`);
      }
      await denoFileSystem.writeFileAtomic(path, data, mode);
    },
  };
}

/** Enrolls, sends one heartbeat, and returns the identity file's exact bytes. */
async function enrolledWithOneBeat(h: Harness): Promise<string> {
  await h.enroll();
  const once = await h.cli(["run", "--once"]);
  assert.equal(once.code, 0, once.stderr);
  return await Deno.readTextFile(h.identityPath);
}

/** `run --once` and `status` still work with the identity as it is. */
async function assertIdentityUsable(h: Harness, agentId: string): Promise<void> {
  const before = h.platform.heartbeats(agentId).length;
  const once = await h.cli(["run", "--once"]);
  assert.equal(once.code, 0, once.stderr);
  assert.equal(h.platform.heartbeats(agentId).length, before + 1);
  const status = await h.cli(["status", "--json"]);
  assert.equal(status.code, 0, status.stderr);
  assert.equal(JSON.parse(status.stdout).agent_id, agentId);
}

Deno.test("enroll into a state dir whose parents are missing creates them 0700; run/status exit 5 before", async () => {
  await using h = await Harness.open();
  const stateDir = join(h.root, "missing", "parent", "state");
  const status = await h.cli(["status"], { stateDir });
  assertFails(status, 5, /^error: Not enrolled: no identity in ".*\/missing\/parent\/state"; run/);
  const run = await h.cli(["run", "--once"], { stateDir });
  // run would enroll with a provisioned token: it names where one goes.
  assertFails(
    run,
    5,
    /^error: Not enrolled: provide an enrollment token in ".*\/state\/enrollment\.token"/,
  );
  assert.deepEqual([...(await listTree(h.root)).keys()], []);

  const enroll = await h.cli(enrollArgs(h.platform, "--token-file", "-"), {
    stdin: h.token(),
    stateDir,
  });
  assert.equal(enroll.code, 0, enroll.stderr);
  const tree = await listTree(h.root);
  for (const dir of ["missing", "missing/parent", "missing/parent/state"]) {
    assert.equal(tree.get(dir)?.mode, 0o700, `${dir} mode`);
  }
  assert.equal(tree.get("missing/parent/state/identity.json")?.mode, 0o600);
});

Deno.test({
  name: "read-only state dir: run keeps beating (status not saved), enroll --force spends no token",
  ignore: skipWithout(CAN_MOUNT),
  async fn() {
    await using h = await Harness.open();
    const identityBefore = await enrolledWithOneBeat(h);
    const agentId = JSON.parse(identityBefore).agent_id as string;
    const statusBefore = await Deno.readTextFile(h.statusPath);
    {
      using _ro = mountReadOnly(h.stateDir);
      const once = await h.cli(["run", "--once"]);
      assert.equal(once.code, 0, once.stderr);
      assert.match(once.stderr, /WARN +Cannot write status file: Read-only file system/);
      assert.equal(h.platform.heartbeats(agentId).length, 2);

      const status = await h.cli(["status", "--json"]);
      assert.equal(status.code, 0, status.stderr);

      const agents = h.platform.agents().length;
      const token = h.token();
      const force = await h.cli(enrollArgs(h.platform, "--token-file", "-", "--force"), {
        stdin: token,
      });
      assertFails(
        force,
        2,
        /^error: Cannot write to state directory ".*": Read-only file system .*nothing was sent/,
      );
      assert.equal(h.platform.agents().length, agents, "a token was spent");

      const unenroll = await h.cli(["unenroll", "--yes", "--local-only"]);
      assertFails(unenroll, 2, /^error: Cannot remove ".*identity\.json": Read-only file system/);
      assert.equal(await Deno.readTextFile(h.identityPath), identityBefore);
      assert.equal(await Deno.readTextFile(h.statusPath), statusBefore);
    }
    await assertIdentityUsable(h, agentId);
  },
});

Deno.test({
  name: "full disk (tmpfs): run keeps beating, enroll --force spends no token, recovery after",
  ignore: skipWithout(CAN_MOUNT),
  async fn() {
    await using h = await Harness.open();
    await Deno.mkdir(h.stateDir, { mode: 0o700 });
    using _tmpfs = mountTmpfs(h.stateDir, 256);
    const identityBefore = await enrolledWithOneBeat(h);
    const agentId = JSON.parse(identityBefore).agent_id as string;
    const filler = await fillDisk(h.stateDir);

    // The reservation block is used up only if a status write succeeds; force one to be due.
    const status = await h.status();
    status.sequence_reserved = status.sequence;
    await Deno.remove(filler);
    await Deno.writeTextFile(h.statusPath, JSON.stringify(status));
    await fillDisk(h.stateDir);

    const once = await h.cli(["run", "--once"]);
    assert.equal(once.code, 0, once.stderr);
    assert.match(once.stderr, /WARN +Cannot write status file: No space left on device/);
    assert.equal(h.platform.heartbeats(agentId).length, 2);

    const agents = h.platform.agents().length;
    const force = await h.cli(enrollArgs(h.platform, "--token-file", "-", "--force"), {
      stdin: h.token(),
    });
    assertFails(
      force,
      2,
      /^error: Cannot write to state directory ".*": No space left on device .*nothing was sent/,
    );
    assert.equal(h.platform.agents().length, agents, "a token was spent");
    assert.equal(await Deno.readTextFile(h.identityPath), identityBefore);
    const leftovers = [...(await listTree(h.stateDir)).keys()].filter((n) => n.endsWith(".tmp"));
    assert.deepEqual(leftovers, []);

    await Deno.remove(join(h.stateDir, "filler.bin"));
    await assertIdentityUsable(h, agentId);
    // Status writes failed while beating, so the platform's 409 puts the sequence right.
    const sequences = h.platform.heartbeats(agentId).map((r) => r.sequence);
    for (let i = 1; i < sequences.length; i++) assert.ok(sequences[i]! > sequences[i - 1]!);
  },
});

Deno.test("identity.json replaced by a directory: every command refuses it, no token spent", async () => {
  await using h = await Harness.open();
  await h.enroll();
  await Deno.remove(h.identityPath);
  await Deno.mkdir(h.identityPath, { mode: 0o700 });
  const refused = /^error: Refusing to use ".*\/identity\.json": it is not a file$/;
  assertFails(await h.cli(["status"]), 2, refused);
  assertFails(await h.cli(["run", "--once"]), 2, refused);
  const agents = h.platform.agents().length;
  assertFails(
    await h.cli(enrollArgs(h.platform, "--token-file", "-", "--force"), { stdin: h.token() }),
    2,
    refused,
  );
  assert.equal(h.platform.agents().length, agents);
  assert.ok((await Deno.lstat(h.identityPath)).isDirectory);
});

Deno.test("identity.json replaced by a symlink to a valid identity: refused, never followed", async () => {
  await using h = await Harness.open();
  const original = await enrolledWithOneBeat(h);
  const agentId = JSON.parse(original).agent_id as string;
  const elsewhere = join(h.root, "elsewhere.json");
  await Deno.rename(h.identityPath, elsewhere);
  await Deno.symlink(elsewhere, h.identityPath);
  const refused =
    /^error: Refusing to use ".*\/identity\.json": it is a symbolic link; replace it with a real file$/;
  assertFails(await h.cli(["status"]), 2, refused);
  assertFails(await h.cli(["run", "--once"]), 2, refused);
  assertFails(
    await h.cli(enrollArgs(h.platform, "--token-file", "-", "--force"), { stdin: h.token() }),
    2,
    refused,
  );
  assert.equal(h.platform.heartbeats(agentId).length, 1, "a heartbeat was sent");
  assert.equal(await Deno.readTextFile(elsewhere), original);
  assert.ok((await Deno.lstat(h.identityPath)).isSymlink);

  // unenroll removes the link itself, never its target.
  const unenroll = await h.cli(["unenroll", "--yes", "--local-only"]);
  assert.equal(unenroll.code, 0, unenroll.stderr);
  assert.match(unenroll.stderr, /WARN +The identity file cannot be loaded; removing it anyway/);
  await assert.rejects(Deno.lstat(h.identityPath), Deno.errors.NotFound);
  assert.equal(await Deno.readTextFile(elsewhere), original);

  // Putting the real file back makes the same identity usable again.
  await Deno.rename(elsewhere, h.identityPath);
  await assertIdentityUsable(h, agentId);
});

Deno.test("status.json replaced by a symlink or a directory: refused, target untouched, identity intact", async () => {
  await using h = await Harness.open();
  const identity = await enrolledWithOneBeat(h);
  const agentId = JSON.parse(identity).agent_id as string;
  const victim = join(h.root, "victim.txt");
  await Deno.writeTextFile(victim, "not yours\n");
  await Deno.remove(h.statusPath);
  await Deno.symlink(victim, h.statusPath);
  const symlink = /^error: Refusing to use ".*\/status\.json": it is a symbolic link/;
  assertFails(await h.cli(["run", "--once"]), 2, symlink);
  assertFails(
    await h.cli(["status"]),
    2,
    /^error: Invalid status file ".*": is a symlink; remove it$/,
  );
  assert.equal(await Deno.readTextFile(victim), "not yours\n");

  await Deno.remove(h.statusPath);
  await Deno.mkdir(h.statusPath);
  assertFails(
    await h.cli(["run", "--once"]),
    2,
    /^error: Refusing to use ".*\/status\.json": it is not a file$/,
  );
  assert.equal(h.platform.heartbeats(agentId).length, 1);
  assert.equal(await Deno.readTextFile(h.identityPath), identity);

  await Deno.remove(h.statusPath);
  await assertIdentityUsable(h, agentId);
});

Deno.test("disk full through the FileSystem seam: IdentityStore.save fails typed, old identity loads", async () => {
  await using h = await Harness.open();
  await h.enroll();
  const before = await new IdentityStore(h.stateDir).load();
  const fs = diskFullFs(() => true);
  const store = new IdentityStore(h.stateDir, { fs });
  const error = await store.save({ ...before, agent_id: "someone-else" }).then(
    () => null,
    (e) => e,
  );
  assert.ok(error instanceof UsageError, String(error));
  assert.match(
    error.message,
    /^Cannot write identity file ".*identity\.json": No space left on device \(os error 28\): .*; the previous file, if any, is unchanged$/,
  );
  assert.deepEqual(fs.refused, [h.identityPath]);
  assert.deepEqual(await new IdentityStore(h.stateDir).load(), before);
});

/** `enroll --force` in-process with a fresh token over stdin, through `fs`, logging into `logs`. */
function forceEnrollThrough(h: Harness, fs: FileSystem, logs: string[]): Promise<unknown> {
  const { ctx } = testContext(h.stateDir, {
    config: { logLevel: "debug", platformUrl: h.platform.url, caFile: h.platform.caFile },
    logger: createLogger({ level: "debug", write: (line) => logs.push(line) }),
    stdin: h.token(),
  });
  return enrollCommand(ctx, { tokenFile: "-", force: true, check: false, timeoutSeconds: 30 }, {
    fs,
  });
}

Deno.test("disk full through the seam: enroll --force fails before spending the token", async () => {
  await using h = await Harness.open();
  const identity = await enrolledWithOneBeat(h);
  const agentId = JSON.parse(identity).agent_id as string;
  const logs: string[] = [];
  const agents = h.platform.agents().length;
  const fs = diskFullFs(() => true);
  const error = await rejectsWith(
    forceEnrollThrough(h, fs, logs),
    UsageError,
  );
  assert.match(error.message, /^Cannot write to state directory ".*": No space left on device/);
  assert.equal(h.platform.agents().length, agents);
  assert.equal(await Deno.readTextFile(h.identityPath), identity);
  for (const line of logs) h.secrets.assertAbsent(line, "enroll log");
  await assertIdentityUsable(h, agentId);
});

Deno.test("disk full through the seam only for the final write: old identity stays, token reported spent", async () => {
  await using h = await Harness.open();
  const identity = await enrolledWithOneBeat(h);
  const agentId = JSON.parse(identity).agent_id as string;
  const logs: string[] = [];
  const fs = diskFullFs((path) => path.endsWith("/identity.json"));
  const error = await rejectsWith(
    forceEnrollThrough(h, fs, logs),
    AgentError,
  );
  assert.equal(error.exitCode, 2, String(error));
  assert.match(
    error.message,
    /^Cannot write identity file ".*": No space left on device .*; the previous file, if any, is unchanged; the enrollment token is probably used up$/,
  );
  assert.equal(await Deno.readTextFile(h.identityPath), identity);
  for (const line of logs) h.secrets.assertAbsent(line, "enroll log");
  await assertIdentityUsable(h, agentId);
});

Deno.test("disk full through the seam: the heartbeat loop keeps sending and warns once", async () => {
  const fs = diskFullFs(() => true);
  const status = new StatusStore("/nonexistent/status.json", emptyStatus("agent-1"), { fs });
  const logs: string[] = [];
  const shutdown = new AbortController();
  const sequences: number[] = [];
  const end = await heartbeatLoop({
    agentId: "agent-1",
    send: (body) => {
      sequences.push(body.sequence);
      if (sequences.length === 5) shutdown.abort(new Error("enough"));
      return Promise.resolve({ next_heartbeat_seconds: 60 });
    },
    snapshot: () => ({ host: {} as never, metrics: {} as never }),
    status,
    schedule: new HeartbeatSchedule({ random: () => 0.5, intervalSeconds: 1 }),
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now(),
    timers: {
      setTimeout: (callback) => setTimeout(callback, 0),
      clearTimeout: (id) => clearTimeout(id as number),
    },
    logger: createLogger({ level: "debug", write: (line) => logs.push(line) }),
    shutdown: shutdown.signal,
  });
  assert.equal(end, "shutdown");
  assert.deepEqual(sequences, [1, 2, 3, 4, 5]);
  const warnings = logs.filter((l) => / WARN +Cannot write status file: No space left/.test(l));
  assert.equal(warnings.length, 1, logs.join("\n"));
  assert.ok(fs.refused.length >= 5);
});
