import type { Filesystem } from "../platform/telemetry_wire.ts";

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
 * container layers, read-only images and network filesystems. Documented in the README.
 */
export const EXCLUDED_FILESYSTEM_TYPES: ReadonlySet<string> = new Set([
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
