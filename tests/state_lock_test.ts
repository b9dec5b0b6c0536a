import assert from "node:assert/strict";
import { join } from "node:path";
import { ExitCode } from "../src/errors.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { createLogger, type Logger, silentLogger } from "../src/log.ts";
import { acquireStateLock, LOCK_FILE_NAME, StateLockedError } from "../src/state/state_lock.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { exists, rejectsWith, runAgent, spawnAgent, tempDir } from "./_support/helpers.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";

const options = (command: string, logger: Logger = silentLogger) => ({
  command,
  action: `Cannot ${command}`,
  logger,
});

Deno.test("state lock: one holder at a time, the loser names it and exits 7", async () => {
  await using dir = await tempDir();
  const lock = await acquireStateLock(dir.path, options("run"));
  const record = JSON.parse(await Deno.readTextFile(join(dir.path, LOCK_FILE_NAME)));
  assert.equal(record.pid, Deno.pid);
  assert.equal(record.command, "run");
  assert.ok(!Number.isNaN(Date.parse(record.started_at)));
  // Within one process too: the OS lock is per open file, not per process.
  const error = await rejectsWith(acquireStateLock(dir.path, options("renew")), StateLockedError);
  assert.equal(error.exitCode, ExitCode.busy);
  assert.equal(ExitCode.busy, 7);
  assert.match(
    error.message,
    new RegExp(
      `^Cannot renew: the identity is in use by oneconnect-agent run \\(pid ${Deno.pid}, started .*\\); wait for it to finish, or stop the service first \\(exit 7\\)$`,
    ),
  );
  await lock.release();
  assert.equal(await exists(join(dir.path, LOCK_FILE_NAME)), false);
  await (await acquireStateLock(dir.path, options("renew"))).release();
});

Deno.test("state lock: a lock left by a killed process is recovered with a warning", async () => {
  await using dir = await tempDir();
  const script = `
    import { acquireStateLock } from ${
    JSON.stringify(new URL("../src/state/state_lock.ts", import.meta.url).href)
  };
    import { silentLogger } from ${JSON.stringify(new URL("../src/log.ts", import.meta.url).href)};
    await acquireStateLock(${
    JSON.stringify(dir.path)
  }, { command: "run", action: "x", logger: silentLogger });
    console.log("held");
    setInterval(() => {}, 1000);
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value).trim(), "held");
  // Alive: busy.
  await assert.rejects(() => acquireStateLock(dir.path, options("renew")), StateLockedError);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  assert.ok(await exists(join(dir.path, LOCK_FILE_NAME)), "a killed holder leaves its file");
  const warnings: string[] = [];
  const logger = createLogger({ level: "warn", write: (line) => warnings.push(line) });
  const lock = await acquireStateLock(dir.path, options("renew", logger));
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0]!,
    /Taking over the stale lock .* of oneconnect-agent run \(pid \d+, .*no longer running/,
  );
  await lock.release();
});

Deno.test("state lock: the lock file is created owner-only (0600)", async () => {
  await using dir = await tempDir();
  const lock = await acquireStateLock(dir.path, options("run"));
  const info = await Deno.stat(join(dir.path, LOCK_FILE_NAME));
  assert.equal(info.mode! & 0o777, 0o600);
  await lock.release();
});

Deno.test("state lock: a recordless lock is busy while fresh (its creator is writing) and stale after", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, LOCK_FILE_NAME);
  await Deno.writeTextFile(path, "", { mode: 0o600 });
  const error = await rejectsWith(acquireStateLock(dir.path, options("renew")), StateLockedError);
  assert.match(error.message, /in use by another oneconnect-agent process;/);
  const old = new Date(Date.now() - 60_000);
  await Deno.utime(path, old, old);
  await (await acquireStateLock(dir.path, options("renew"))).release();
});

Deno.test("state lock: a stale lock file owned by another user is refused, not removed", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, LOCK_FILE_NAME);
  await Deno.writeTextFile(path, "", { mode: 0o600 });
  const old = new Date(Date.now() - 60_000);
  await Deno.utime(path, old, old);
  // As root every file counts as ours: give it to another user; otherwise claim another uid.
  const owner = Deno.uid() === 0 ? 4242 : Deno.uid()!;
  if (Deno.uid() === 0) await Deno.chown(path, owner, null);
  await assert.rejects(
    () => acquireStateLock(dir.path, { ...options("renew"), uid: owner + 1 }),
    new RegExp(
      `^UsageError: Refusing ".*${LOCK_FILE_NAME}": it is owned by uid ${owner}, not by uid ${
        owner + 1
      }`,
    ),
  );
  assert.ok(await exists(path), "the lock file was removed");
});

Deno.test("renew while run holds the identity exits 7 in one line and sends nothing", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  // An unreachable platform: run keeps retrying, renew would fail with exit 4 if it got that far.
  await new IdentityStore(stateDir).save(
    await makeIdentity(await createDevCa(), { platformUrl: "https://127.0.0.1:1/" }),
  );
  const runner = spawnAgent(["--state-dir", stateDir, "run"]);
  try {
    const deadline = Date.now() + 20_000;
    while (!(await exists(join(stateDir, LOCK_FILE_NAME)))) {
      assert.ok(Date.now() < deadline, "run took its lock");
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = await Deno.readTextFile(join(stateDir, "identity.json"));
    for (const [args, action] of [[["renew"], "renew"], [["run", "--once"], "run"]] as const) {
      const r = await runAgent(["--state-dir", stateDir, ...args]);
      assert.equal(r.code, 7, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^error: Cannot ${action}: the identity is in use by oneconnect-agent run \\(pid \\d+`,
        ),
      );
    }
    assert.equal(await Deno.readTextFile(join(stateDir, "identity.json")), before);
  } finally {
    runner.kill("SIGTERM");
    await runner.output();
  }
  assert.equal(await exists(join(stateDir, LOCK_FILE_NAME)), false, "released on exit");
});

Deno.test("state lock: concurrent starts over a stale lock, exactly one wins, the others exit 7", async () => {
  // Fails on 32b58ff: each process that judged the lock stale removed the file and created a new
  // one; one that had opened the old file before the removal then locked it after the winner let
  // go of it, removed the winner's new file, and created and took its own: two holders.
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const signals = join(dir.path, "signals");
  await Deno.mkdir(stateDir);
  await Deno.mkdir(signals);
  const lockPath = join(stateDir, LOCK_FILE_NAME);
  const url = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const CONTENDERS = 8;
  const ROUNDS = 60;
  // Real processes, each taking part in every round: spin until the round's start signal so that
  // all judge the stale lock at the same moment; a winner holds it until the round's release.
  const script = `
    import { acquireStateLock } from ${url("../src/state/state_lock.ts")};
    import { silentLogger } from ${url("../src/log.ts")};
    const signal = (name) => { try { Deno.statSync(${
    JSON.stringify(signals)
  } + "/" + name); return true; } catch { return false; } };
    for (let round = 0; round < ${ROUNDS}; round++) {
      while (!signal("go-" + round)) { /* spin */ }
      try {
        const lock = await acquireStateLock(${
    JSON.stringify(stateDir)
  }, { command: "run", action: "Cannot run", logger: silentLogger });
        console.log(round + " won");
        while (!signal("release-" + round)) await new Promise((r) => setTimeout(r, 1));
        await lock.release();
      } catch (e) {
        console.log(round + " exit " + e.exitCode);
      }
    }
  `;
  const children = Array.from({ length: CONTENDERS }, () =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  const lines = children.map((c) =>
    c.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter()).getReader()
  );
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // A lock left by a process that is gone: a record, no OS lock.
      await Deno.writeTextFile(
        lockPath,
        JSON.stringify({ pid: 999999, started_at: "2026-01-01T00:00:00.000Z", command: "run" }),
        { mode: 0o600 },
      );
      await Deno.writeTextFile(join(signals, `go-${round}`), "");
      // Every contender has decided (winners hold until the release): count the holders.
      const said = await Promise.all(lines.map(async (l) => (await l.read()).value));
      const winners = said.filter((s) => s === `${round} won`);
      assert.equal(winners.length, 1, `round ${round}: ${said.join(", ")}`);
      for (const s of said) {
        assert.ok(s === `${round} won` || s === `${round} exit ${ExitCode.busy}`, s);
      }
      await Deno.writeTextFile(join(signals, `release-${round}`), "");
      while (await exists(lockPath)) await new Promise((r) => setTimeout(r, 1));
    }
    const codes = await Promise.all(children.map(async (c) => (await c.status).code));
    assert.deepEqual(codes, codes.map(() => 0));
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already exited
      }
    }
    await Promise.all(children.map((c) => c.status));
    await Promise.all(lines.map((l) => l.cancel()));
  }
});

/** Splits a text stream into lines. */
function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const part of parts) controller.enqueue(part);
    },
    flush(controller) {
      if (rest !== "") controller.enqueue(rest);
    },
  });
}
