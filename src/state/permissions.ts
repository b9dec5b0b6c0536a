/**
 * Permissions of the state directory and its secret files: POSIX mode audit and repair (0700 for
 * the directory, 0600 for files), owner checks, and the Windows ACL in their place.
 */
import * as z from "../zod.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { type FileSystem, lstatOrNull } from "../file_system.ts";
import type { Logger } from "../log.ts";
import {
  auditStateDirOwnership,
  octal,
  type OwnershipHost,
  requireKind,
  requireOwner,
  shellQuote,
} from "./ownership.ts";
import { type CommandRunner, WindowsAcl } from "./windows_acl.ts";

/** One permission fix made at start: a secret file or directory whose mode was tightened. */
export const PermissionRepairSchema = z.object({
  path: z.string(),
  old_mode: z.string(),
  new_mode: z.string(),
});
/** A permission repair (recorded in the status file). */
export type PermissionRepair = z.infer<typeof PermissionRepairSchema>;

/** Mode of the state directory. */
export const DIR_MODE = 0o700;
/** Mode of each file in the state directory. */
export const FILE_MODE = 0o600;

/** What {@linkcode StatePermissions} works with. */
export interface StatePermissionsOptions {
  fs: FileSystem;
  logger: Logger;
  /** Operating system whose permission model applies. */
  os: typeof Deno.build.os;
  /** Runs icacls and PowerShell on Windows. */
  runCommand: CommandRunner;
  /** Owner and parent checks (POSIX). */
  ownership: OwnershipHost;
}

/** Secures and audits a state directory and the secret files in it. */
export class StatePermissions {
  readonly #options: StatePermissionsOptions;

  constructor(options: StatePermissionsOptions) {
    this.#options = options;
  }

  /**
   * Creates the missing directory `dir`: mode 0700, or on Windows restricted to SYSTEM and
   * Administrators in the same call (no moment with inherited entries).
   */
  async createDir(dir: string): Promise<void> {
    const { fs, os, runCommand } = this.#options;
    if (os === "windows") await new WindowsAcl(runCommand).createRestricted(dir);
    else await fs.mkdir(dir, DIR_MODE);
  }

  /**
   * Secures the existing directory `dir` (lstat-ed as `info`): the ACL on Windows, else owner
   * check and mode 0700.
   */
  async secureDir(dir: string, info: Deno.FileInfo): Promise<void> {
    requireKind(dir, info, "directory");
    const { os, runCommand, ownership } = this.#options;
    if (os === "windows") {
      await new WindowsAcl(runCommand).secure(dir);
      return;
    }
    // Never chmod someone else's directory into "ours": its owner would keep control of it.
    requireOwner(dir, info, ownership.uid());
    await this.#tighten(dir, info, DIR_MODE);
  }

  /**
   * Tightens a group/other-accessible directory (to 0700) and the existing `files` in it (to
   * 0600), warning with the path and old mode since the secrets may have been exposed. Refuses
   * symlinks, non-regular files and files owned by another user. Windows has no mode bits: the
   * ACLs of the directory and of each file are read back and refused unless owned by and granting
   * only SYSTEM and Administrators. Returns the repairs; `[]` when `dir` does not exist.
   */
  async audit(dir: string, files: string[]): Promise<PermissionRepair[]> {
    const { fs, os, runCommand, ownership } = this.#options;
    const repairs: PermissionRepair[] = [];
    const dirInfo = await lstatOrNull(fs, dir);
    if (dirInfo === null) return repairs;
    requireKind(dir, dirInfo, "directory");
    if (os === "windows") {
      const acl = new WindowsAcl(runCommand);
      await acl.audit(dir);
      const present: string[] = [];
      for (const path of files) {
        const info = await lstatOrNull(fs, path);
        if (info === null) continue;
        requireKind(path, info, "file");
        present.push(path);
      }
      await acl.auditFiles(present);
      return repairs;
    }
    await auditStateDirOwnership(dir, ownership);
    const dirRepair = await this.#tighten(dir, dirInfo, DIR_MODE);
    if (dirRepair) repairs.push(dirRepair);
    for (const path of files) {
      const info = await lstatOrNull(fs, path);
      if (info === null) continue;
      requireKind(path, info, "file");
      requireOwner(path, info, ownership.uid());
      // A second name for the file (planted while the directory was open to others) would make
      // the chmod below change a file elsewhere, e.g. /etc/shadow on a host without
      // protected_hardlinks.
      if ((info.nlink ?? 1) > 1) {
        throw new UsageError(
          `Refusing ${
            JSON.stringify(path)
          }: it has ${info.nlink} hard links, so it is also another file; check it, then remove it (as root: rm ${
            shellQuote(path)
          })`,
        );
      }
      const repair = await this.#tighten(path, info, FILE_MODE);
      if (repair) repairs.push(repair);
    }
    return repairs;
  }

  async #tighten(
    path: string,
    info: Deno.FileInfo,
    wanted: number,
  ): Promise<PermissionRepair | null> {
    if (info.mode === null || (info.mode & 0o077) === 0) return null;
    const oldMode = octal(info.mode & 0o777);
    const newMode = octal(wanted & 0o777);
    try {
      await this.#options.fs.chmod(path, wanted);
    } catch (e) {
      throw new UsageError(
        `Insecure permissions ${oldMode} on ${JSON.stringify(path)} and cannot tighten them (${
          errorMessage(e)
        }); as its owner or root run: chmod ${newMode.slice(1)} ${shellQuote(path)}`,
      );
    }
    this.#options.logger.warn(
      `Tightened permissions of ${
        JSON.stringify(path)
      } from ${oldMode} to ${newMode}; it was readable by other users, so its secrets may have been exposed`,
      { path, old_mode: oldMode, new_mode: newMode },
    );
    return { path, old_mode: oldMode, new_mode: newMode };
  }
}
