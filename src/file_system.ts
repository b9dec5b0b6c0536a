import { errorMessage, UsageError } from "./errors.ts";

// Path helpers of our own: importing node:path would start Deno's Node compat layer in a steady
// `run` (docs/footprint.md has the cost); state paths need only join, dirname, basename
// and resolve.
const WINDOWS = Deno.build.os === "windows";
const SEP = WINDOWS ? "\\" : "/";
const SEPARATORS = WINDOWS ? /[\\/]+/g : /\/+/g;

/** Joins path segments with the platform separator, collapsing repeated separators. */
export function join(...segments: string[]): string {
  const joined = segments.filter((s) => s !== "").join(SEP);
  // Keep a leading UNC prefix (\\server\share) intact on Windows.
  const unc = WINDOWS && /^[\\/]{2}[^\\/]/.test(joined);
  const collapsed = joined.replace(SEPARATORS, SEP);
  return unc ? SEP + collapsed : collapsed;
}

function lastSeparator(path: string): number {
  return WINDOWS ? Math.max(path.lastIndexOf("\\"), path.lastIndexOf("/")) : path.lastIndexOf("/");
}

/** The directory part of `path` (`.` when it has none). */
export function dirname(path: string): string {
  const trimmed = path.length > 1 ? path.replace(WINDOWS ? /[\\/]+$/ : /\/+$/, "") : path;
  const i = lastSeparator(trimmed);
  if (i < 0) return ".";
  return i === 0 ? trimmed.slice(0, 1) : trimmed.slice(0, i);
}

/** The last segment of `path`. */
export function basename(path: string): string {
  const trimmed = path.length > 1 ? path.replace(WINDOWS ? /[\\/]+$/ : /\/+$/, "") : path;
  return trimmed.slice(lastSeparator(trimmed) + 1);
}

/**
 * `path` made absolute against `cwd` (default: the working directory) with `.` and `..` segments
 * and repeated separators removed, like node:path `resolve(path)` for POSIX paths. On Windows only
 * paths that are already absolute (drive or UNC) are normalised; a relative one is joined to `cwd`.
 */
export function resolve(path: string, cwd: () => string = () => Deno.cwd()): string {
  const absolute = WINDOWS ? /^(?:[A-Za-z]:)?[\\/]/.test(path) : path.startsWith("/");
  const full = absolute ? path : `${cwd()}${SEP}${path}`;
  const root = WINDOWS ? /^(?:[A-Za-z]:)?[\\/]{1,2}/.exec(full)?.[0] ?? "" : "/";
  const out: string[] = [];
  for (const segment of full.slice(root.length).split(SEPARATORS)) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") out.pop();
    else out.push(segment);
  }
  return root.replace(WINDOWS ? /[\\/]/g : /\//g, SEP) + out.join(SEP);
}

/** The file operations the agent's state needs, passed in so faults (disk full) can be injected. */
export interface FileSystem {
  readTextFile(path: string): Promise<string>;
  /** {@linkcode readRegularFile}: one handle, no symbolic link, the handle's metadata. */
  readRegularFile(path: string, maxBytes: number): Promise<HandleRead | ReadRefusal>;
  /** Writes `data` to `path` atomically with `mode`: temp file, fsync, rename, fsync dir. */
  writeFileAtomic(path: string, data: string, mode: number): Promise<void>;
  remove(path: string): Promise<void>;
  lstat(path: string): Promise<Deno.FileInfo>;
  chmod(path: string, mode: number): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  /** Names of the entries of a directory. */
  readDir(path: string): Promise<string[]>;
}

/** A fresh temp path beside `path`, of the shape {@linkcode tempFilePattern} matches. */
function tempPathFor(path: string): string {
  const suffix = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16);
  return join(dirname(path), `.${basename(path)}.${suffix}.tmp`);
}

/** Matches the temp files {@linkcode writeFileAtomic} creates for `name` (left by a crash). */
export function tempFilePattern(name: string): RegExp {
  return new RegExp(`^\\.${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.[0-9a-f]+\\.tmp$`);
}

const encoder = new TextEncoder();

/** Writes all of `text` to a synchronous writer (stdout, stderr), looping over short writes. */
export function writeAllSync(writer: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += writer.writeSync(bytes.subarray(written));
}

/** What a permission error asks of the operator (the state directory belongs to another user). */
const RUN_AS_ROOT_HINT =
  "run as root (e.g. with sudo), or pass --state-dir with a directory this user owns";

/**
 * Why a file operation on `path` failed, for an operator: a permission error says so and what to
 * do. `lookup` is for operations that only look the path up (lstat, stat): their permission error
 * comes from a directory above `path`, which says nothing about whether `path` exists.
 */
export function fileErrorReason(e: unknown, path?: string, lookup = false): string {
  if (e instanceof Deno.errors.PermissionDenied) {
    const where = path !== undefined && lookup
      ? ` (this user cannot look inside ${
        JSON.stringify(dirname(path))
      }, so whether it exists is unknown)`
      : "";
    return `permission denied${where}; ${RUN_AS_ROOT_HINT}`;
  }
  return errorMessage(e);
}

/**
 * {@linkcode fileErrorReason} for a failed read of `path`: when the permission error came from the
 * lookup (a directory above it cannot be searched), it says that whether the file exists is unknown.
 */
export async function readErrorReason(
  e: unknown,
  path: string,
  lstat: (path: string) => Promise<Deno.FileInfo>,
): Promise<string> {
  const lookup = e instanceof Deno.errors.PermissionDenied &&
    await lstat(path).then(() => false, () => true);
  return fileErrorReason(e, path, lookup);
}

/**
 * `lstat` of `path`, or `null` when it does not exist; any other failure is a UsageError naming
 * the path. Never follows a symbolic link, so callers can refuse one.
 */
export async function lstatOrNull(
  fs: Pick<FileSystem, "lstat">,
  path: string,
): Promise<Deno.FileInfo | null> {
  try {
    return await fs.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new UsageError(
      `Cannot inspect ${JSON.stringify(path)}: ${fileErrorReason(e, path, true)}`,
    );
  }
}

/**
 * Why an lstat-ed entry is not a real `kind`: `"symlink"` (never followed: it could point
 * anywhere), `"other"` (another kind), or `null` when it is one. Callers word the refusal.
 */
export function entryKindProblem(
  info: Deno.FileInfo,
  kind: "file" | "directory",
): "symlink" | "other" | null {
  if (info.isSymlink) return "symlink";
  return (kind === "file" ? info.isFile : info.isDirectory) ? null : "other";
}

/** A regular file read through one handle: its text and that handle's metadata (fstat). */
export interface HandleRead {
  text: string;
  info: Deno.FileInfo;
}

/**
 * Why {@linkcode readRegularFile} did not read a name: a symbolic link (never followed), another
 * kind of entry, a name `replaced` between its lstat and its open, or a file over the size cap.
 */
export type ReadRefusal = "symlink" | "other" | "replaced" | "too-large";

/** Why a {@linkcode ReadRefusal} stopped the read, and what to do, for an error message. */
export function readRefusalReason(
  refusal: ReadRefusal,
  maxBytes: number,
  place = "its directory",
): string {
  switch (refusal) {
    case "symlink":
      return "it is a symbolic link; replace it with a regular file";
    case "other":
      return "it is not a file";
    case "replaced":
      return `it was replaced while being read; check who else writes ${place}`;
    case "too-large":
      return `it is larger than ${maxBytes} bytes`;
  }
}

/**
 * Whether two stats are of the same file (device and inode). Where the platform reports no inode
 * (`null`), the names cannot be told apart and count as the same.
 */
export function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  if (a.ino === null || b.ino === null) return true;
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Reads a regular file of at most `maxBytes` without following a symbolic link: lstat the name,
 * open it, and keep it only if the opened file is the one lstat saw (same device and inode), so a
 * name swapped in between is caught; the metadata is the handle's, for owner and mode audits of
 * what was actually read. A missing file throws `Deno.errors.NotFound`. `lstat` is a seam.
 */
export async function readRegularFile(
  path: string,
  maxBytes: number,
  lstat: (path: string) => Promise<Deno.FileInfo> = (p) => Deno.lstat(p),
): Promise<HandleRead | ReadRefusal> {
  const seen = await lstat(path);
  const problem = entryKindProblem(seen, "file");
  if (problem !== null) return problem;
  if (seen.size > maxBytes) return "too-large";
  using file = await Deno.open(path, { read: true });
  const info = await file.stat();
  if (!info.isFile || !sameFile(seen, info)) return "replaced";
  // One byte over the size fstat gave shows a file that grew while being read.
  const buffer = new Uint8Array(Math.min(info.size, maxBytes) + 1);
  let total = 0;
  while (total < buffer.length) {
    const n = await file.read(buffer.subarray(total));
    if (n === null) break;
    total += n;
  }
  if (total === buffer.length) return total > maxBytes ? "too-large" : "replaced";
  return { text: new TextDecoder().decode(buffer.subarray(0, total)), info };
}

function syncDir(dir: string): void {
  // Windows cannot open a directory for fsync; NTFS renames are journaled.
  if (Deno.build.os === "windows") return;
  using handle = Deno.openSync(dir, { read: true });
  handle.syncSync();
}

/**
 * Writes a file so that a crash at any moment leaves either the old or the new content. The temp
 * file is created with `createNew` (O_EXCL: it cannot follow a planted symlink) and with its final
 * mode; nothing is ever done to it by name afterwards but the rename (docs/security.md, "Where the
 * agent writes").
 * The calls are synchronous: each asynchronous file operation is a hop to a runtime worker thread
 * (a wake-up), and `run` rewrites status.json on every heartbeat; the fsyncs block the event loop
 * for a few ms, which nothing in a heartbeat agent waits on.
 */
export function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  try {
    replaceFile(path, data, mode, true);
    return Promise.resolve();
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Temp file, rename; with `durable`, fsync of the file before and of its directory after. No
 * chmod, chown or open by name: between two calls on a name, another user who can write the
 * directory could swap it for a symbolic link to any file (issue 27 #1).
 */
function replaceFile(path: string, data: string, mode: number, durable: boolean): void {
  const tmp = tempPathFor(path);
  try {
    if (durable) {
      // The umask may narrow `mode` (never widen it): fine for the 0600 files of the state
      // directory, which only their owner reads; fsync needs the handle that wrote.
      using file = Deno.openSync(tmp, { write: true, createNew: true, mode });
      writeAllSync(file, data);
      file.syncSync();
    } else {
      // Deno applies `mode` to the open handle (fchmod) before writing, whatever the umask: a
      // metrics file needs all of 0644 for a collector running as another user.
      Deno.writeFileSync(tmp, encoder.encode(data), { createNew: true, mode });
    }
  } catch (error) {
    // A file already at `tmp` is not ours to remove; one we created and failed to fill is.
    if (!(error instanceof Deno.errors.AlreadyExists)) removeIfPresent(tmp);
    throw error;
  }
  try {
    Deno.renameSync(tmp, path);
  } catch (error) {
    removeIfPresent(tmp);
    throw error;
  }
  if (durable) syncDir(dirname(path));
}

function removeIfPresent(path: string): void {
  try {
    // unlink never follows a symbolic link.
    Deno.removeSync(path);
  } catch {
    // already gone
  }
}

/**
 * Replaces a file in one rename, so no reader ever sees half of it, without fsync: for a small
 * file rewritten every heartbeat that holds nothing to lose (the metrics file), where the fsyncs
 * cost more than the rest together. The temp file is created with `createNew` and its mode.
 */
export function replaceFileSync(path: string, data: string, mode: number): void {
  replaceFile(path, data, mode, false);
}

/** The real file system. */
export const denoFileSystem: FileSystem = {
  readTextFile: (path) => Deno.readTextFile(path),
  // Through this file system's lstat, so that a wrapper's lstat is the one that is checked.
  readRegularFile(path, maxBytes) {
    return readRegularFile(path, maxBytes, (p) => this.lstat(p));
  },
  writeFileAtomic,
  remove: (path) => Deno.remove(path),
  lstat: (path) => Deno.lstat(path),
  chmod: (path, mode) => Deno.chmod(path, mode),
  mkdir: (path, mode) => Deno.mkdir(path, { recursive: true, mode }),
  readDir: async (path) => {
    const names: string[] = [];
    for await (const entry of Deno.readDir(path)) names.push(entry.name);
    return names;
  },
};
