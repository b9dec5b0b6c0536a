import { basename, dirname, join } from "node:path";

/** The file operations the agent's state needs, passed in so faults (disk full) can be injected. */
export interface FileSystem {
  readTextFile(path: string): Promise<string>;
  /** Writes `data` to `path` atomically with `mode`: temp file, fsync, rename, fsync dir. */
  writeFileAtomic(path: string, data: string, mode: number): Promise<void>;
  remove(path: string): Promise<void>;
  lstat(path: string): Promise<Deno.FileInfo>;
  chmod(path: string, mode: number): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  /** Names of the entries of a directory. */
  readDir(path: string): Promise<string[]>;
}

/** Matches the temp files {@linkcode writeFileAtomic} creates for `name` (left by a crash). */
export function tempFilePattern(name: string): RegExp {
  return new RegExp(`^\\.${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.[0-9a-f]+\\.tmp$`);
}

const encoder = new TextEncoder();

async function syncDir(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync; NTFS renames are journaled.
  if (Deno.build.os === "windows") return;
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/**
 * Writes a file so that a crash at any moment leaves either the old or the new content. The temp
 * file is created with `mode` (never wider) and `createNew`, so it cannot follow a planted symlink.
 */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const dir = dirname(path);
  const suffix = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16);
  const tmp = join(dir, `.${basename(path)}.${suffix}.tmp`);
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    try {
      const bytes = encoder.encode(data);
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
  await syncDir(dir);
}

/** The real file system. */
export const denoFileSystem: FileSystem = {
  readTextFile: (path) => Deno.readTextFile(path),
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
