/**
 * StrictModes for local state (like OpenSSH's): before the agent trusts a file in its state
 * directory, that directory and the file must be owned by the current user or root, and no
 * directory above it may be writable by group or others unless sticky (`/tmp`). Otherwise another
 * local user could replace the identity, the configuration or the token under us. POSIX only:
 * Windows state is protected by its ACL (src/state/windows_acl.ts).
 */
import {
  dirname,
  entryKindProblem,
  fileErrorReason,
  lstatOrNull,
  resolve,
} from "../file_system.ts";
import { UsageError } from "../errors.ts";

/** What the ownership checks need from the host (a seam for tests). */
export interface OwnershipHost {
  /** Our effective uid, `null` where there is none (Windows). */
  uid(): number | null;
  lstat(path: string): Promise<Deno.FileInfo>;
  realPath(path: string): Promise<string>;
}

/** The real host. */
export const denoOwnershipHost: OwnershipHost = {
  uid: () => Deno.uid(),
  lstat: (path) => Deno.lstat(path),
  realPath: (path) => Deno.realPath(path),
};

const STICKY = 0o1000;

/** Quotes `path` for a POSIX shell command line when it needs quoting. */
export function shellQuote(path: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}

function ownedByUs(info: Deno.FileInfo, uid: number): boolean {
  return info.uid === null || info.uid === uid || info.uid === 0;
}

/** Permission bits (and setuid/setgid/sticky) as octal, e.g. `0644`, `01777`. */
export function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;
}

/** Refuses a symbolic link, or an entry that is not a `kind`, at `path` (already lstat-ed). */
export function requireKind(path: string, info: Deno.FileInfo, kind: "file" | "directory"): void {
  const problem = entryKindProblem(info, kind);
  if (problem === "symlink") {
    throw new UsageError(
      `Refusing to use ${
        JSON.stringify(path)
      }: it is a symbolic link; replace it with a real ${kind}`,
    );
  }
  if (problem !== null) {
    throw new UsageError(`Refusing to use ${JSON.stringify(path)}: it is not a ${kind}`);
  }
}

/**
 * Refuses `path` (already lstat-ed as `info`) unless it is owned by `uid` or root. The fix hands
 * it to us; it never chmods someone else's file into "ours" (its owner would keep control).
 */
export function requireOwner(path: string, info: Deno.FileInfo, uid: number | null): void {
  if (uid === null || ownedByUs(info, uid)) return;
  const recursive = info.isDirectory ? "-R " : "";
  throw new UsageError(
    `Refusing ${
      JSON.stringify(path)
    }: it is owned by uid ${info.uid}, not by uid ${uid} (this user) or root, so that user controls it; check its contents, then as root run: chown ${recursive}${uid} ${
      shellQuote(path)
    }`,
  );
}

/**
 * Refuses `dir` unless every existing directory above it is owned by `uid` or root and not
 * writable by group or others, except sticky ones like `/tmp`: both the directories named in the
 * path (a symbolic link among them must be owned by us or root, who alone could swap it) and those
 * its symlinks resolve to. Missing ancestors (made by the agent later, with mode 0700) are skipped.
 * `subject` names `dir` in the refusal; given a file's path, it checks the file's directory.
 * `ownersChecked`: how many directories of each chain, nearest first, must be owned by us or root.
 */
export async function requireSafeParents(
  dir: string,
  host: OwnershipHost,
  subject = "state directory",
  ownersChecked = Infinity,
): Promise<void> {
  const uid = host.uid();
  if (uid === null) return;
  const lexical = resolve(dir);
  let current = dirname(lexical);
  let real: string | undefined;
  for (;;) {
    try {
      real = await host.realPath(current);
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || dirname(current) === current) throw cannot(e);
      current = dirname(current);
    }
  }
  for (const start of new Set([dirname(lexical), real])) {
    for (let p = start, depth = 0;; p = dirname(p), depth++) {
      let info: Deno.FileInfo | null;
      try {
        info = await host.lstat(p);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw cannot(e, p);
        info = null;
      }
      if (info !== null) check(p, info, depth < ownersChecked);
      if (dirname(p) === p) break;
    }
  }

  function check(p: string, info: Deno.FileInfo, owner: boolean): void {
    if (owner && !ownedByUs(info, uid!)) {
      throw new UsageError(
        `Refusing ${subject} ${JSON.stringify(dir)}: the directory ${
          JSON.stringify(p)
        } above it is owned by uid ${info.uid}, who could replace it; use a ${subject} under root-owned directories, or as root run: chown root ${
          shellQuote(p)
        }`,
      );
    }
    // A symbolic link's own mode means nothing; its directory is checked next.
    const mode = info.isSymlink ? 0 : info.mode ?? 0;
    if ((mode & 0o022) !== 0 && (mode & STICKY) === 0) {
      throw new UsageError(
        `Refusing ${subject} ${JSON.stringify(dir)}: the directory ${
          JSON.stringify(p)
        } above it is writable by group or others (mode ${
          octal(mode)
        }), who could replace it; as its owner or root run: chmod go-w ${shellQuote(p)}`,
      );
    }
  }

  function cannot(e: unknown, path = current): UsageError {
    return new UsageError(
      `Cannot inspect ${JSON.stringify(path)} above the ${subject}: ${
        fileErrorReason(e, path, true)
      }`,
    );
  }
}

/**
 * Audits a file that configures the agent (`agent.json`), with the metadata of the handle it was
 * read through: owned by us or root, not writable by group or others.
 */
export function auditConfigFile(path: string, info: Deno.FileInfo, uid: number | null): void {
  requireOwner(path, info, uid);
  const mode = info.mode ?? 0;
  if (uid !== null && (mode & 0o022) !== 0) {
    throw new UsageError(
      `Refusing configuration ${JSON.stringify(path)}: it is writable by group or others (mode ${
        octal(mode)
      }); as its owner or root run: chmod go-w ${shellQuote(path)}`,
    );
  }
}

/**
 * Audits the state directory itself before anything in it is trusted: when it exists, a real
 * directory owned by us or root; and its parents as {@linkcode requireSafeParents}.
 */
export async function auditStateDirOwnership(dir: string, host: OwnershipHost): Promise<void> {
  const uid = host.uid();
  if (uid === null) return;
  await requireSafeParents(dir, host);
  const info = await lstatOrNull(host, dir);
  if (info === null) return;
  requireKind(dir, info, "directory");
  requireOwner(dir, info, uid);
}
