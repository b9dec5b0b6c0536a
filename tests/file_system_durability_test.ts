/**
 * The durable-write promise (docs/configuration.md "State directory and files"): every file the agent must not lose
 * (identity.json, status.json, the enroll write probe) is written as "temp file created, written,
 * fsync of that fd, rename to the final name, fsync of the directory". A kill -9 cannot see a
 * missing fsync (the page cache outlives the process), so this test reads the syscalls themselves
 * with strace while the real CLI enrolls, heartbeats and renews.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Harness, HAS_STRACE } from "./_support/fault_helpers.ts";
import { enrollArgs, skipWithout } from "./_support/helpers.ts";

const TRACED = "openat,write,fsync,fdatasync,rename,renameat,renameat2,close";

/** One finished syscall of an `strace -f -y` trace. */
interface Syscall {
  name: string;
  args: string;
  result: string;
}

/**
 * Parses an `strace -f -y -o` trace: joins each `<unfinished ...>` call with its
 * `<... resumed>` end (another thread ran between), drops signals and exits.
 */
function parseTrace(text: string): Syscall[] {
  const pending = new Map<string, string>();
  const calls: Syscall[] = [];
  for (const raw of text.split("\n")) {
    const m = /^(\d+)\s+(.*)$/.exec(raw);
    if (m === null) continue;
    const [, pid, rest] = m as unknown as [string, string, string];
    let line = rest;
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed !== null) {
      line = (pending.get(pid) ?? "") + resumed[1];
      pending.delete(pid);
    }
    if (line.endsWith("<unfinished ...>")) {
      pending.set(pid, line.slice(0, -"<unfinished ...>".length));
      continue;
    }
    const call = /^(\w+)\((.*)\)\s+=\s+(.*)$/.exec(line);
    if (call !== null) calls.push({ name: call[1]!, args: call[2]!, result: call[3]! });
  }
  return calls;
}

/** The path `-y` prints after an fd (`13</a/b>` is `/a/b`), or null. */
function fdPath(fdArg: string): string | null {
  return /^\d+<(.*)>$/.exec(fdArg.trim())?.[1] ?? null;
}

/** The quoted path arguments of a rename call (`rename`, `renameat`, `renameat2`). */
function renamePaths(call: Syscall): { from: string; to: string } | null {
  const quoted = [...call.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((q) => q[1]!);
  return quoted.length === 2 ? { from: quoted[0]!, to: quoted[1]! } : null;
}

/**
 * Checks that every rename into `dir` is the end of a durable write and returns the final names:
 * the temp file was created (O_CREAT|O_EXCL), written, fsynced on its fd and closed, then renamed,
 * then `dir` opened and fsynced. Fails naming the step that is missing.
 */
function durableWrites(calls: Syscall[], dir: string): string[] {
  const names: string[] = [];
  calls.forEach((call, at) => {
    if (!/^rename(at2?)?$/.test(call.name) || call.result !== "0") return;
    const paths = renamePaths(call);
    if (paths === null || !paths.to.startsWith(`${dir}/`)) return;
    const name = paths.to.slice(dir.length + 1);
    const write = `the write of ${name} (temp ${paths.from})`;
    const opened = calls.findLastIndex((c, i) =>
      i < at && c.name === "openat" && c.args.includes(`"${paths.from}"`) &&
      /O_CREAT/.test(c.args) && /O_EXCL/.test(c.args)
    );
    assert.ok(opened >= 0, `${write}: no create of the temp file with O_CREAT|O_EXCL`);
    const fd = /^(\d+)</.exec(calls[opened]!.result)?.[1];
    assert.ok(fd !== undefined, `${write}: the create failed: ${calls[opened]!.result}`);
    const onFd = (c: Syscall) => c.args.startsWith(`${fd}<${paths.from}>`);
    const closed = calls.findIndex((c, i) => i > opened && c.name === "close" && onFd(c));
    assert.ok(closed > opened && closed < at, `${write}: the temp fd was not closed before rename`);
    const between = calls.slice(opened + 1, closed).filter(onFd);
    const writes = between.filter((c) => c.name === "write" && Number(c.result) > 0);
    assert.ok(writes.length > 0, `${write}: nothing written to the temp fd`);
    const lastWrite = between.lastIndexOf(writes.at(-1)!);
    const synced = between.findIndex((c, i) =>
      i > lastWrite && (c.name === "fsync" || c.name === "fdatasync") && c.result === "0"
    );
    assert.ok(synced >= 0, `${write}: no fsync of the temp fd after its last write`);
    // Before the next write's rename: each write syncs the directory itself.
    const next = calls.findIndex((c, i) => i > at && /^rename(at2?)?$/.test(c.name));
    const dirSynced = calls.slice(at + 1, next < 0 ? undefined : next).some((c) =>
      c.name === "fsync" && fdPath(c.args) === dir && c.result === "0"
    );
    assert.ok(dirSynced, `${write}: no fsync of the directory ${dir} after the rename`);
    names.push(name);
  });
  return names;
}

/** Runs the CLI under strace, asserts exit 0 and returns the parsed trace. */
async function traced(h: Harness, args: string[], label: string): Promise<Syscall[]> {
  const traceFile = join(h.root, `${label}.strace`);
  await using run = h.spawnTraced(args, { strace: ["-e", `trace=${TRACED}`], traceFile });
  const end = await run.exited();
  assert.equal(end.code, 0, `${label} failed:\n${end.stderr}`);
  return parseTrace(await Deno.readTextFile(traceFile));
}

Deno.test({
  name:
    "durable writes (enroll probe, identity at enroll and renew, status at run and renew): temp, write, fsync, rename, fsync dir",
  ignore: skipWithout(HAS_STRACE),
  async fn() {
    await using h = await Harness.open();
    const stateDir = h.stateDir;
    const token = await h.tokenFile();

    const enroll = await traced(h, enrollArgs(h.platform, "--token-file", token), "enroll");
    h.secrets.addIdentity(await h.identity());
    assert.deepEqual([...new Set(durableWrites(enroll, stateDir))].sort(), [
      ".enroll-write-probe",
      "identity.json",
      "status.json",
    ]);

    // --once reserves a sequence block, then saves the status after the heartbeat.
    const run = await traced(h, ["run", "--once"], "run");
    const runWrites = durableWrites(run, stateDir);
    assert.ok(runWrites.length >= 2, `run --once: ${runWrites}`);
    assert.deepEqual([...new Set(runWrites)], ["status.json"]);

    const renew = await traced(h, ["renew"], "renew");
    h.secrets.addIdentity(await h.identity());
    assert.deepEqual([...new Set(durableWrites(renew, stateDir))].sort(), [
      "identity.json",
      "status.json",
    ]);
  },
});

Deno.test("durableWrites names the missing fsync of the temp file and of the directory", () => {
  const trace = (steps: string[]) => parseTrace(steps.map((s) => `7 ${s}`).join("\n"));
  const open =
    'openat(AT_FDCWD</d>, "/d/.f.1.tmp", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 9</d/.f.1.tmp>';
  const write = 'write(9</d/.f.1.tmp>, "{}", 2) = 2';
  const sync = "fsync(9</d/.f.1.tmp>) = 0";
  const close = "close(9</d/.f.1.tmp>) = 0";
  const rename = 'rename("/d/.f.1.tmp", "/d/f") = 0';
  const dirSync = ['openat(AT_FDCWD</d>, "/d", O_RDONLY|O_CLOEXEC) = 10</d>', "fsync(10</d>) = 0"];
  assert.deepEqual(
    durableWrites(trace([open, write, sync, close, rename, ...dirSync]), "/d"),
    ["f"],
  );
  assert.throws(
    () => durableWrites(trace([open, write, close, rename, ...dirSync]), "/d"),
    /no fsync of the temp fd/,
  );
  assert.throws(
    () => durableWrites(trace([open, sync, write, close, rename, ...dirSync]), "/d"),
    /no fsync of the temp fd after its last write/,
  );
  assert.throws(
    () => durableWrites(trace([open, write, sync, close, rename]), "/d"),
    /no fsync of the directory/,
  );
  // A call split by another thread is joined again.
  const split = parseTrace(
    "7 fsync(9</d/.f.1.tmp> <unfinished ...>\n8 close(3) = 0\n7 <... fsync resumed>) = 0",
  );
  assert.deepEqual(split.map((c) => c.name), ["close", "fsync"]);
  assert.equal(split[1]!.result, "0");
});
