/**
 * One process at a time holds the identity for writing: `run` for its whole life (it renews the
 * certificate and keeps the identity in memory), `renew`, `enroll` and `unenroll` while they work.
 * The lock is `identity.lock` in the state directory, created with `createNew` and holding the
 * owner's pid and start time, plus an OS lock on the open file (flock / LockFileEx) that the
 * kernel drops when the process dies: a lock file whose OS lock is free belongs to a process that
 * is gone (killed, crashed) and is recovered.
 */
import * as z from "../zod.ts";
import { denoFileSystem, entryKindProblem, join, lstatOrNull, sameFile } from "../file_system.ts";
import { parseJsonDocument } from "../json_document.ts";
import { AgentError, errorMessage, ExitCode, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { requireOwner } from "./ownership.ts";
import { isoTime } from "../iso_time.ts";

/** Name of the lock file inside the state directory. */
export const LOCK_FILE_NAME = "identity.lock";

/** A lock file younger than this with no record yet is being written by its creator. */
const FRESH_LOCK_MS = 5_000;

const LockRecordSchema = z.object({
  pid: z.int(),
  /** When the holding process started (ISO 8601). */
  started_at: z.string(),
  /** The command holding it (`run`, `renew`, ...). */
  command: z.string(),
});

/** What the lock file says about its holder. */
export type LockRecord = z.infer<typeof LockRecordSchema>;

/** Another agent process holds the identity (exit 7): retry when it is done. */
export class StateLockedError extends AgentError {
  constructor(message: string) {
    super(message, ExitCode.busy);
  }
}

/** A held lock; releasing removes the file. */
export interface StateLock extends AsyncDisposable {
  readonly path: string;
  release(): Promise<void>;
}

/** Options of {@linkcode acquireStateLock}. */
export interface StateLockOptions {
  /** The command taking the lock, for the loser's message. */
  command: string;
  /** What the loser is told it cannot do, e.g. `Cannot renew`. */
  action: string;
  logger: Logger;
  /** Our uid for the owner check (`null` on Windows). */
  uid?: number | null;
}

function parseRecord(text: string): LockRecord | null {
  // An empty or partly written record is no record.
  const parsed = parseJsonDocument(LockRecordSchema, text);
  return parsed.ok
    ? { pid: parsed.data.pid, started_at: parsed.data.started_at, command: parsed.data.command }
    : null;
}

async function readAll(file: Deno.FsFile): Promise<string> {
  // Windows refuses reads of a region another process has locked: the record is then unknown.
  try {
    await file.seek(0, Deno.SeekMode.Start);
    const buffer = new Uint8Array(4096);
    let total = 0;
    while (total < buffer.length) {
      const n = await file.read(buffer.subarray(total));
      if (n === null) break;
      total += n;
    }
    return new TextDecoder().decode(buffer.subarray(0, total));
  } catch {
    return "";
  }
}

function holderText(record: LockRecord | null): string {
  return record === null
    ? "another oneconnect-agent process"
    : `oneconnect-agent ${record.command} (pid ${record.pid}, started ${record.started_at})`;
}

/**
 * Takes the state directory's lock for this process, or throws {@linkcode StateLockedError} naming
 * the holder. A lock left by a process that is gone is taken over in place with a warning.
 *
 * One rule makes this race-free: the lock file's name is removed only by the process holding its
 * OS lock (at release, before it unlocks). So a process that holds the OS lock of the file the
 * name still designates (same inode, checked after locking) holds the lock; a stale file is
 * never removed and re-created, which let two processes that both judged it stale both win.
 */
export async function acquireStateLock(
  stateDir: string,
  options: StateLockOptions,
): Promise<StateLock> {
  const path = join(stateDir, LOCK_FILE_NAME);
  const busy = (record: LockRecord | null) =>
    new StateLockedError(
      `${options.action}: the identity is in use by ${
        holderText(record)
      }; wait for it to finish, or stop the service first (exit ${ExitCode.busy})`,
    );
  for (let attempt = 0; attempt < 3; attempt++) {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true, createNew: true, mode: 0o600 });
    } catch (e) {
      // No state directory, no identity to protect: the command reports "not enrolled" itself.
      if (e instanceof Deno.errors.NotFound) return unlocked(path);
      const code = (e as { code?: string }).code;
      if (code === "EROFS" || code === "ENOSPC" || code === "EDQUOT") {
        // Nobody can write the identity here either; the command reports its own write errors.
        options.logger.warn(
          `Cannot create the lock file ${JSON.stringify(path)}: ${
            errorMessage(e)
          }; continuing without it`,
        );
        return unlocked(path);
      }
      if (!(e instanceof Deno.errors.AlreadyExists)) {
        throw new UsageError(
          `Cannot create the lock file ${JSON.stringify(path)}: ${errorMessage(e)}`,
        );
      }
      const taken = await takeOverOrThrow(path, options, busy);
      if (taken !== null) return taken;
      continue;
    }
    try {
      // Blocking: another process that opened our fresh file only reads it and lets go.
      await file.lock(true);
    } catch (e) {
      file.close();
      await Deno.remove(path).catch(() => {});
      throw new UsageError(`Cannot lock ${JSON.stringify(path)}: ${errorMessage(e)}`);
    }
    if (!(await designates(path, file))) {
      file.close();
      continue;
    }
    return await hold(path, file, options.command);
  }
  throw busy(null);
}

/** Whether `path` still names the open `file` (same device and inode). */
async function designates(path: string, file: Deno.FsFile): Promise<boolean> {
  const [named, opened] = await Promise.all([lstatOrNull(denoFileSystem, path), file.stat()]);
  return named !== null && named.isFile && sameFile(named, opened);
}

/** Writes our record into the locked `file` and returns the held lock. */
async function hold(path: string, file: Deno.FsFile, command: string): Promise<StateLock> {
  const record: LockRecord = {
    pid: Deno.pid,
    started_at: isoTime(performance.timeOrigin),
    command,
  };
  // The OS lock is the guard; the record only names the holder (a full disk may refuse it).
  await (async () => {
    await file.truncate(0);
    await file.seek(0, Deno.SeekMode.Start);
    await file.write(new TextEncoder().encode(`${JSON.stringify(record)}\n`));
  })().catch(() => {});
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    // Removed while still locked, so nobody can mistake it for a stale one in between.
    await Deno.remove(path).catch(() => {});
    file.close();
  };
  return { path, release, [Symbol.asyncDispose]: release };
}

function unlocked(path: string): StateLock {
  const release = () => Promise.resolve();
  return { path, release, [Symbol.asyncDispose]: release };
}

/**
 * Takes over a stale lock file in place (its OS lock is free: the holder is gone) and returns the
 * held lock; `null` when the file went away or changed meanwhile (try again); else throws `busy`.
 */
async function takeOverOrThrow(
  path: string,
  options: StateLockOptions,
  busy: (record: LockRecord | null) => StateLockedError,
): Promise<StateLock | null> {
  const info = await lstatOrNull(denoFileSystem, path);
  if (info === null) return null; // released meanwhile: try again
  if (entryKindProblem(info, "file") !== null) {
    throw new UsageError(
      `Refusing the lock file ${JSON.stringify(path)}: it is not a regular file; remove it`,
    );
  }
  requireOwner(path, info, options.uid ?? (Deno.build.os === "windows" ? null : Deno.uid()));
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new UsageError(
      `Cannot open the lock file ${JSON.stringify(path)}: ${errorMessage(e)}`,
    );
  }
  try {
    if (!(await file.tryLock(true))) throw busy(parseRecord(await readAll(file)));
    // Locked; but if the name went to another file meanwhile (the holder released it, another
    // process created a new one), this one is no longer the lock.
    if (!(await designates(path, file))) {
      file.close();
      return null;
    }
    const record = parseRecord(await readAll(file));
    const age = Date.now() - (info.mtime?.getTime() ?? 0);
    // Its creator may be between createNew and writing its record.
    if (record === null && age < FRESH_LOCK_MS) throw busy(null);
    options.logger.warn(
      `Taking over the stale lock ${JSON.stringify(path)} of ${
        holderText(record)
      }: it is no longer running`,
      { path, pid: record?.pid },
    );
    return await hold(path, file, options.command);
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * The process holding the state lock now, or null when none does: no lock file, or one whose OS
 * lock is free (its holder was killed: a dead pid is never reported as running). `record` names
 * the holder when its file can be read.
 */
export async function lockHolder(stateDir: string): Promise<{ record: LockRecord | null } | null> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(join(stateDir, LOCK_FILE_NAME), { read: true });
  } catch {
    return null;
  }
  try {
    // A shared lock is granted only when no process holds the exclusive one.
    if (await file.tryLock(false)) {
      await file.unlock();
      return null;
    }
    return { record: parseRecord(await readAll(file)) };
  } finally {
    file.close();
  }
}
