import type { Filesystem } from "../wire/telemetry_wire.ts";
import type { SystemSeam } from "./system.ts";

/** Disk space moves slowly: `df` runs at most this often. */
export const FILESYSTEM_INTERVAL_MS = 5 * 60_000;

/** GNU coreutils `df`, Linux only (macOS and Windows report no filesystems yet). */
export const DF = "/usr/bin/df";

/**
 * `df` arguments: bytes, local filesystems only (so a hung network mount is never queried), and
 * columns without the device name (it may contain spaces; the mount point is the last column).
 */
export const DF_ARGS = [
  "-B1",
  "-l",
  "--output=fstype,size,used,avail,itotal,iavail,target",
] as const;

/**
 * Filesystem types that are not local, real storage: memory-backed, kernel pseudo filesystems,
 * container layers, read-only images and network filesystems. Documented in docs/telemetry.md.
 */
const EXCLUDED_FILESYSTEM_TYPES: ReadonlySet<string> = new Set([
  // memory-backed
  "tmpfs",
  "devtmpfs",
  "ramfs",
  "hugetlbfs",
  // kernel pseudo filesystems
  "proc",
  "sysfs",
  "devpts",
  "cgroup",
  "cgroup2",
  "securityfs",
  "debugfs",
  "tracefs",
  "pstore",
  "bpf",
  "mqueue",
  "configfs",
  "fusectl",
  "binfmt_misc",
  "efivarfs",
  "nsfs",
  "rpc_pipefs",
  "autofs",
  "fuse.lxcfs",
  "fuse.gvfsd-fuse",
  "fuse.portal",
  // container layers and read-only images
  "overlay",
  "aufs",
  "squashfs",
  "iso9660",
  // network and cluster filesystems
  "nfs",
  "nfs4",
  "cifs",
  "smb3",
  "smbfs",
  "9p",
  "fuse.sshfs",
  "ceph",
  "fuse.ceph",
  "glusterfs",
  "fuse.glusterfs",
  "afs",
  "davfs",
  "fuse.rclone",
]);

function number(token: string): number | null {
  if (!/^\d+$/.test(token)) return null; // GNU df prints "-" where a figure does not exist
  const n = Number(token);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * Parses `df -B1 -l --output=fstype,size,used,avail,itotal,iavail,target` output, keeping real
 * local filesystems: types outside {@linkcode EXCLUDED_FILESYSTEM_TYPES} with a non-zero size.
 */
export function parseDfOutput(text: string): Filesystem[] {
  const out: Filesystem[] = [];
  const lines = text.split("\n");
  for (const line of lines.slice(1)) {
    const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\/.*)$/.exec(line.trimEnd());
    if (!m) continue;
    const [, type, size, used, avail, itotal, iavail, target] = m as unknown as string[];
    const total = number(size!);
    if (EXCLUDED_FILESYSTEM_TYPES.has(type!) || total === null || total === 0) continue;
    const usedBytes = number(used!);
    const inodes = number(itotal!);
    out.push([
      target!,
      type!,
      total,
      usedBytes === null || usedBytes > total ? null : total - usedBytes,
      number(avail!),
      inodes === 0 ? null : inodes,
      inodes === 0 ? null : number(iavail!),
    ]);
  }
  return out;
}

/** macOS (BSD) `df`. */
export const MACOS_DF = "/bin/df";
/** `df` arguments on macOS: KiB, inode columns, local filesystems only. */
const MACOS_DF_ARGS = ["-k", "-i", "-l"] as const;
/** macOS `mount`: BSD `df` prints no filesystem type, `mount` does. */
export const MACOS_MOUNT = "/sbin/mount";
/** Types left out on macOS besides {@linkcode EXCLUDED_FILESYSTEM_TYPES}: the device tree. */
const MACOS_EXCLUDED_TYPES: ReadonlySet<string> = new Set(["devfs", "nullfs"]);
/**
 * The APFS data volume, where every user file lives since macOS 10.15. Apple marks it `nobrowse`
 * like the system's helper volumes (VM, Preboot, Update, ...), which are left out.
 */
const MACOS_DATA_VOLUME = "/System/Volumes/Data";

/** Mount point to type and options, from macOS `mount` (`/dev/disk3s5 on / (apfs, local)`). */
export function parseMacosMount(text: string): Map<string, { type: string; options: string[] }> {
  const out = new Map<string, { type: string; options: string[] }>();
  for (const line of text.split("\n")) {
    const m = /^.+? on (\/.*) \(([^()]+)\)$/.exec(line.trimEnd());
    if (!m) continue;
    const [type, ...options] = m[2]!.split(",").map((s) => s.trim());
    if (type) out.set(m[1]!, { type, options });
  }
  return out;
}

/**
 * Joins macOS `df -k -i -l` (KiB blocks; iused and ifree) with `mount` (types, options): local
 * filesystems of a non-excluded type and non-zero size, without the system's `nobrowse` helper
 * volumes except the data volume; a mount point `mount` does not list is left out.
 */
export function parseMacosDf(dfText: string, mountText: string): Filesystem[] {
  const mounts = parseMacosMount(mountText);
  const out: Filesystem[] = [];
  for (const line of dfText.split("\n").slice(1)) {
    const m = /^.+?\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s+(\d+)\s+(\d+)\s+(?:\d+%|-)\s+(\/.*)$/
      .exec(line.trimEnd());
    if (!m) continue;
    const [, blocks, used, avail, iused, ifree, target] = m as unknown as string[];
    const mount = mounts.get(target!);
    if (!mount) continue;
    if (EXCLUDED_FILESYSTEM_TYPES.has(mount.type) || MACOS_EXCLUDED_TYPES.has(mount.type)) continue;
    if (mount.options.includes("nobrowse") && target !== MACOS_DATA_VOLUME) continue;
    const kib = (token: string) => {
      const n = Number(token) * 1024;
      return Number.isSafeInteger(n) ? n : null;
    };
    const total = kib(blocks!);
    if (total === null || total === 0) continue;
    const usedBytes = kib(used!);
    const inodes = Number(iused) + Number(ifree);
    const inodesKnown = Number.isSafeInteger(inodes) && inodes > 0;
    out.push([
      target!,
      mount.type,
      total,
      usedBytes === null || usedBytes > total ? null : total - usedBytes,
      kib(avail!),
      inodesKnown ? inodes : null,
      inodesKnown ? Number(ifree) : null,
    ]);
  }
  return out;
}

/**
 * Local filesystems through the OS's `df` (Linux; macOS with `mount` for the types, both at once);
 * empty elsewhere (Windows: no tool reports volume space without PowerShell or WMI startup costs).
 */
export async function readFilesystems(system: SystemSeam): Promise<Filesystem[]> {
  switch (system.os) {
    case "linux":
      return parseDfOutput(await system.runCommand(DF, [...DF_ARGS]));
    case "darwin": {
      const [df, mount] = await Promise.all([
        system.runCommand(MACOS_DF, [...MACOS_DF_ARGS]),
        system.runCommand(MACOS_MOUNT, []),
      ]);
      return parseMacosDf(df, mount);
    }
    default:
      return [];
  }
}
