/**
 * The `permissions.json` entry: the state directory and each entry in it, as `lstat` and the ACL
 * describe them (kind, mode, owner, what `run` would refuse or tighten), never their contents.
 * Read-only: unlike `run`'s audit (src/state/permissions.ts) nothing is tightened or removed.
 *
 * @module
 */
import { errorMessage } from "../errors.ts";
import { type FileSystem, join } from "../file_system.ts";
import { DIR_MODE, FILE_MODE } from "../state/permissions.ts";
import {
  auditStateDirOwnership,
  octal,
  type OwnershipHost,
  requireOwner,
} from "../state/ownership.ts";
import { type CommandRunner, foreignEntries, WindowsAcl } from "../state/windows_acl.ts";
import type { DiagnosticEntry, Unreadable } from "./manifest.ts";
import { safeMessage } from "./sanitize.ts";

/** What the audit reads (seams for tests). */
export interface PermissionAuditHost {
  fs: Pick<FileSystem, "lstat" | "readDir">;
  ownership: OwnershipHost;
  os: typeof Deno.build.os;
  runCommand: CommandRunner;
}

/** How an entry's access is controlled, in one phrase. */
function posixAclSummary(mode: number): string {
  // An access ACL's named entries are capped by the mask, which the group bits show.
  return (mode & 0o070) === 0
    ? "no ACL entry can grant access (group class bits are ---)"
    : `group class bits ${
      octal(mode & 0o070).slice(-2, -1)
    }: an ACL mask may let named users or groups in`;
}

async function describe(
  path: string,
  name: string,
  host: PermissionAuditHost,
  isDir: boolean,
): Promise<Record<string, unknown>> {
  const info = await host.fs.lstat(path);
  const kind = info.isSymlink
    ? "symlink"
    : info.isDirectory
    ? "directory"
    : info.isFile
    ? "file"
    : "other";
  const out: Record<string, unknown> = { name, kind };
  if (kind === "file") out.size = info.size;
  if (host.os === "windows") {
    try {
      const entries = await new WindowsAcl(host.runCommand).read(path);
      out.acl = entries.map((e) => `${e.principal}:${e.flags.map((f) => `(${f})`).join("")}`);
      out.acl_foreign_entries = foreignEntries(entries).length;
    } catch (e) {
      out.acl = `unreadable: ${safeMessage(errorMessage(e))}`;
    }
    return out;
  }
  const mode = info.mode ?? 0;
  out.mode = octal(mode & 0o7777);
  out.uid = info.uid;
  out.gid = info.gid;
  out.acl = posixAclSummary(mode);
  try {
    requireOwner(path, info, host.ownership.uid());
    out.owner_ok = true;
  } catch (e) {
    out.owner_ok = false;
    out.owner_problem = safeMessage(errorMessage(e));
  }
  const wanted = isDir ? DIR_MODE : FILE_MODE;
  if (kind === "symlink" || kind === "other") {
    out.run_would = "refuse it (not a regular file or directory)";
  } else if ((mode & 0o077) !== 0) {
    out.run_would = `tighten it to ${octal(wanted)} (readable or writable by group or others)`;
  }
  return out;
}

/** The `permissions.json` entry for `stateDir`. */
export async function permissionAuditEntry(
  stateDir: string,
  host: PermissionAuditHost,
): Promise<{ entry: DiagnosticEntry; unreadable: Unreadable[] }> {
  const unreadable: Unreadable[] = [];
  const content: Record<string, unknown> = { state_dir: stateDir, uid: host.ownership.uid() };
  try {
    content.directory = await describe(stateDir, ".", host, true);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) content.directory = { exists: false };
    else {
      const reason = safeMessage(errorMessage(e));
      content.directory = { unreadable: reason };
      unreadable.push({ what: "state directory", reason });
    }
  }
  if (host.os !== "windows") {
    try {
      await auditStateDirOwnership(stateDir, host.ownership);
      content.ownership_check = "ok: the directory and those above it are safe";
    } catch (e) {
      content.ownership_check = safeMessage(errorMessage(e));
    }
  }
  const files: Record<string, unknown>[] = [];
  try {
    const names = (await host.fs.readDir(stateDir)).sort();
    for (const name of names) {
      try {
        files.push(await describe(join(stateDir, name), name, host, false));
      } catch (e) {
        files.push({ name, unreadable: safeMessage(errorMessage(e)) });
      }
    }
    content.entries = files;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      const reason = safeMessage(errorMessage(e));
      content.entries = { unreadable: reason };
      unreadable.push({ what: "state directory listing", reason });
    }
  }
  return {
    entry: {
      name: "permissions.json",
      source: "lstat of the state directory and of each entry in it (icacls on Windows)",
      noSecret: "names, kinds, sizes, modes, owners and ACL entries; no file is opened",
      content,
    },
    unreadable,
  };
}
