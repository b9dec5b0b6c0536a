/**
 * A real systemd as PID 1 for package and service tests: a Debian bookworm root file system made
 * by `debootstrap` once and cached under {@linkcode CACHE_DIR}, an overlay of it per container
 * (so each test starts from the pristine tree at no cost), booted with `systemd-nspawn --boot`,
 * commands run inside with `nsenter`, stopped with `systemctl poweroff`.
 *
 * Follows /work/shared/recipes/systemd-in-a-container.md (flags, pitfalls). Needs root. The
 * container shares the host's network: a platform on the host's 127.0.0.1 is reachable inside.
 * Only the processes this module started are ever signalled (the nspawn child, by its id).
 *
 * @module
 */
import { join } from "node:path";
import { feedStdin, findTool, withDeadline } from "./helpers.ts";

/** Where the root file systems are cached between runs (CI keeps it on the machine). */
export const CACHE_DIR = "/var/cache/oneconnect-ci";
/** The mirror apt already uses on these machines. */
export const MIRROR = "http://deb.debian.org/debian";
/** Debian release of the root file system. */
export const SUITE = "bookworm";
/**
 * Packages besides `--variant=minbase`: systemd as PID 1 and its bus; CA certificates; curl to
 * fetch a repository key the way the docs say; rpm so that rpm packages install and upgrade with
 * the real rpm inside (its scriptlets then talk to this systemd).
 */
export const ROOTFS_PACKAGES = [
  "systemd",
  "systemd-sysv",
  "dbus",
  "ca-certificates",
  "curl",
  "rpm",
];
/** The cached tree's directory name: bump its number whenever the recipe here changes. */
export const ROOTFS_NAME = `${SUITE}-systemd-v1`;
/** PATH inside the container. */
export const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const NSPAWN = "systemd-nspawn";

/** Why containers cannot run here (not root, a tool missing), or null when they can. */
export function systemdContainerUnavailable(): string | null {
  if (Deno.uid() !== 0) return "not root (systemd-nspawn, mount and debootstrap need root)";
  for (const [tool, pkg] of [[NSPAWN, "systemd-container"], ["debootstrap", "debootstrap"]]) {
    if (findTool(tool!) === null) return `${tool} not found (apt-get install -y ${pkg})`;
  }
  for (const tool of ["nsenter", "mount", "umount", "setsid"]) {
    if (findTool(tool) === null) return `${tool} not found (apt-get install -y util-linux mount)`;
  }
  return null;
}

/** A finished command. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a host command to completion with a deadline (the test fails, never hangs). */
export async function hostRun(
  cmd: string[],
  opts: { env?: Record<string, string>; stdin?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  const child = withDeadline(
    new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      env: opts.env,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
    opts.timeoutMs ?? 120_000,
    cmd.join(" "),
  );
  if (opts.stdin !== undefined) await feedStdin(child, opts.stdin);
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Like {@linkcode hostRun}, failing with the command's output when it exits non-zero. */
export async function hostRunOk(
  cmd: string[],
  opts: Parameters<typeof hostRun>[1] = {},
): Promise<string> {
  const r = await hostRun(cmd, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`.trimEnd());
  }
  return r.stdout;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/**
 * The cached root file system, built with `debootstrap` (about 2 minutes) when absent. Concurrent
 * callers (parallel test files, other suites) wait on one lock; the tree appears under its final
 * name only once complete, so a half-built tree is never used.
 */
export async function ensureRootfs(): Promise<string> {
  const rootfs = join(CACHE_DIR, ROOTFS_NAME);
  if (await exists(join(rootfs, "usr/lib/systemd/systemd"))) return rootfs;
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  using lock = await Deno.open(join(CACHE_DIR, `${ROOTFS_NAME}.lock`), {
    create: true,
    write: true,
  });
  await lock.lock(true);
  try {
    if (await exists(join(rootfs, "usr/lib/systemd/systemd"))) return rootfs;
    const partial = `${rootfs}.partial`;
    await hostRun(["rm", "-rf", "--one-file-system", partial]);
    await hostRunOk([
      "debootstrap",
      "--variant=minbase",
      `--include=${ROOTFS_PACKAGES.join(",")}`,
      SUITE,
      partial,
      MIRROR,
    ], { timeoutMs: 900_000 });
    await finishRootfs(partial);
    await Deno.rename(partial, rootfs);
    return rootfs;
  } finally {
    await lock.unlock();
  }
}

/** Makes a fresh debootstrap tree boot quickly and identically in every copy. */
export async function finishRootfs(root: string): Promise<void> {
  // Empty = uninitialised: each boot gets its own transient machine id, as a clone of an image
  // would, and one container keeps it across the package operations of a test.
  await Deno.writeTextFile(join(root, "etc/machine-id"), "");
  await Deno.remove(join(root, "var/lib/dbus/machine-id")).catch(() => {});
  // debootstrap copies the host's name; without the file nspawn names the host after the machine.
  await Deno.remove(join(root, "etc/hostname")).catch(() => {});
  // Units that only slow a container's boot or fail in it (no consoles, no hardware clock).
  for (const unit of ["getty.target", "console-getty.service", "systemd-timesyncd.service"]) {
    await Deno.remove(join(root, "etc/systemd/system", unit)).catch(() => {});
    await Deno.symlink("/dev/null", join(root, "etc/systemd/system", unit)).catch(() => {});
  }
  // The downloaded .debs are not needed again: a smaller tree to keep.
  await hostRun(["chroot", root, "apt-get", "clean"]);
}

/** A bind mount into the container. */
export interface Bind {
  host: string;
  container: string;
  readOnly?: boolean;
}

/** Options of {@linkcode bootContainer}. */
export interface BootOptions {
  /** Bind mounts (e.g. the host's deno binary, read-only). */
  binds?: Bind[];
  /** Milliseconds to wait for `systemctl is-system-running`; default 60 s. */
  bootTimeoutMs?: number;
}

/** Options of {@linkcode Container.exec}. */
export interface ExecOptions {
  /** Environment besides PATH and LANG. */
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
}

/** A booted container; poweroff, unmount and cleanup happen on dispose. */
export interface Container extends AsyncDisposable {
  /** Machine name (also its hostname). */
  readonly name: string;
  /** The container's root as seen from the host (the overlay's merged directory). */
  readonly root: string;
  /** PID (host's view) of the container's systemd. */
  readonly pid: number;
  /** Runs `cmd` inside, in every namespace of the container, with a clean environment. */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** `sh -c script` inside; fails (throws with the output) when it exits non-zero. */
  sh(script: string, opts?: ExecOptions): Promise<string>;
  /** Writes a file inside the container (parents created), with `mode`. */
  writeFile(path: string, data: string | Uint8Array, mode?: number): Promise<void>;
  /** What PID 1 wrote to the console so far. */
  console(): Promise<string>;
}

let counter = 0;

/** Host PIDs of every descendant of `pid`, from /proc. */
async function descendants(pid: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`).catch(() => "");
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (Number.isFinite(ppid)) parent.set(Number(entry.name), ppid);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/** Removes a cgroup directory and its sub-groups, deepest first (they must be empty of tasks). */
async function removeCgroup(path: string): Promise<void> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (!info?.isDirectory) return;
  for await (const entry of Deno.readDir(path)) {
    if (entry.isDirectory) await removeCgroup(join(path, entry.name));
  }
  await Deno.remove(path).catch(() => {});
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Boots a fresh container on an overlay of the cached root file system and waits until its
 * systemd reports `running` (a `degraded` boot fails, naming the failed units).
 */
export async function bootContainer(opts: BootOptions = {}): Promise<Container> {
  const rootfs = await ensureRootfs();
  const name = `oc-${Deno.pid}-${++counter}-${Math.random().toString(36).slice(2, 6)}`;
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: `oneconnect-${name}-` });
  const upper = join(work, "upper");
  const ovlWork = join(work, "work");
  const root = join(work, "root");
  for (const d of [upper, ovlWork, root]) await Deno.mkdir(d);
  await hostRunOk([
    "mount",
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${rootfs},upperdir=${upper},workdir=${ovlWork}`,
    root,
  ]);
  // nspawn in its own cgroups, or it creates payload/ and supervisor/ in the host's root cgroup.
  const cgroups = ["systemd", "unified"].map((h) => `/sys/fs/cgroup/${h}/oneconnect-ci-${name}`)
    .filter((p) => Deno.statSync(join(p, "..")).isDirectory);
  for (const cg of cgroups) await Deno.mkdir(cg, { recursive: true });
  const consoleLog = join(work, "console.log");
  const args = [
    "-D",
    root,
    "-M",
    name,
    "--register=no",
    "--keep-unit",
    "--boot",
    "--console=read-only",
    "--link-journal=no",
    "--system-call-filter=bpf",
    ...(opts.binds ?? []).map((b) =>
      `--bind${b.readOnly === false ? "" : "-ro"}=${b.host}:${b.container}`
    ),
  ];
  const enterCgroups = cgroups.map((cg) => `echo $$ > ${cg}/cgroup.procs`).join("; ");
  const nspawn = new Deno.Command("sh", {
    args: [
      "-c",
      `${enterCgroups}; exec setsid ${NSPAWN} "$@" </dev/null >${consoleLog} 2>&1`,
      "sh",
      ...args,
    ],
    env: { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = nspawn.status.then((s) => {
    exited = true;
    return s;
  });

  let pid = 0;
  const cleanup = async () => {
    if (!exited && pid !== 0) {
      await exec(["systemctl", "poweroff"], { timeoutMs: 10_000 }).catch(() => {});
      for (let i = 0; i < 150 && !exited; i++) await sleep(100);
    }
    if (!exited) {
      // Only the nspawn process this function started, by its id.
      nspawn.kill("SIGTERM");
      for (let i = 0; i < 100 && !exited; i++) await sleep(100);
      if (!exited) nspawn.kill("SIGKILL");
    }
    await status;
    let umount = await hostRun(["umount", root]);
    if (umount.code !== 0) umount = await hostRun(["umount", "-l", root]);
    for (const cg of cgroups) await removeCgroup(cg);
    if (umount.code === 0) await hostRun(["rm", "-rf", "--one-file-system", work]);
  };

  const exec = async (cmd: string[], o: ExecOptions = {}): Promise<ExecResult> => {
    const env = Object.entries({ PATH: CONTAINER_PATH, LANG: "C.UTF-8", ...o.env })
      .map(([k, v]) => `${k}=${v}`);
    return await hostRun(
      ["nsenter", "-t", String(pid), "-a", "-r", "-w", "--", "env", "-i", ...env, ...cmd],
      { stdin: o.stdin, timeoutMs: o.timeoutMs ?? 120_000 },
    );
  };

  try {
    const deadline = Date.now() + (opts.bootTimeoutMs ?? 60_000);
    while (pid === 0) {
      if (exited || Date.now() > deadline) {
        throw new Error(`container ${name} did not start:\n${await readTail(consoleLog)}`);
      }
      for (const p of await descendants(nspawn.pid)) {
        const comm = await Deno.readTextFile(`/proc/${p}/comm`).catch(() => "");
        if (comm.trim() === "systemd") pid = p;
      }
      if (pid === 0) await sleep(50);
    }
    let state = "";
    while (true) {
      const r = await exec(["systemctl", "is-system-running"], { timeoutMs: 10_000 })
        .catch(() => ({ code: -1, stdout: "", stderr: "" }));
      state = r.stdout.trim();
      if (state === "running") break;
      if (exited || Date.now() > deadline) {
        const failed = await exec(["systemctl", "--failed", "--no-legend"]).catch(() => undefined);
        throw new Error(
          `container ${name} is "${state}", not running: ${failed?.stdout ?? ""}\n${await readTail(
            consoleLog,
          )}`,
        );
      }
      await sleep(100);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }

  return {
    name,
    root,
    pid,
    exec,
    async sh(script, o) {
      const r = await exec(["sh", "-c", script], o);
      if (r.code !== 0) {
        throw new Error(`in ${name}: sh -c '${script}' exited ${r.code}:\n${r.stdout}${r.stderr}`);
      }
      return r.stdout;
    },
    async writeFile(path, data, mode = 0o644) {
      const target = join(root, path);
      await Deno.mkdir(join(target, ".."), { recursive: true });
      if (typeof data === "string") await Deno.writeTextFile(target, data, { mode });
      else await Deno.writeFile(target, data, { mode });
      await Deno.chmod(target, mode);
    },
    console: () => Deno.readTextFile(consoleLog).catch(() => ""),
    [Symbol.asyncDispose]: cleanup,
  };
}

async function readTail(path: string): Promise<string> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.slice(-3000);
}
