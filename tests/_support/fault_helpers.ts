/**
 * Shared harness of the fault-injection suite: a dev platform, a state directory, and a CLI runner
 * that always logs at debug level and checks every captured byte (stdout, stderr, every file the
 * agent writes besides identity.json) for the secrets the suite has seen.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type DevPlatform,
  type DevPlatformOptions,
  startDevPlatform,
} from "../../tasks/dev_platform/server.ts";
import { writeFileAtomic } from "../../src/file_system.ts";
import { agentRunFlags } from "../../tasks/permissions.ts";
import {
  childEnv,
  type CliResult,
  enrollArgs,
  errorLine,
  MAIN,
  runAgent,
  SPAWN_DEADLINE_MS,
  spawnAgent,
  until,
  withDeadline,
} from "./helpers.ts";

/** Decodes child output. */
export const decoder = new TextDecoder();

/** Shortest value treated as a secret to look for (shorter ones match by accident). */
const MIN_SECRET = 8;

/** Secret values seen by a test; {@linkcode assertAbsent} fails when one shows up anywhere. */
export class SecretLedger {
  readonly #values = new Map<string, string>();

  /** Remembers `value` under `label` (the label, never the value, is printed on a leak). */
  add(label: string, value: string | undefined | null): void {
    if (typeof value !== "string") return;
    const trimmed = value.trim();
    if (trimmed.length >= MIN_SECRET) this.#values.set(trimmed, label);
  }

  /** Remembers the secrets of an identity: token, key PEM and each base64 line of the key. */
  addIdentity(identity: { service_account_token?: unknown; private_key?: unknown }): void {
    if (typeof identity.service_account_token === "string") {
      this.add("service_account_token", identity.service_account_token);
      this.add("Authorization value", `Bearer ${identity.service_account_token}`);
    }
    if (typeof identity.private_key === "string") {
      this.add("private key PEM", identity.private_key);
      for (const line of identity.private_key.split("\n")) {
        if (/^[A-Za-z0-9+/=]{16,}$/.test(line)) this.add("private key PEM line", line);
      }
    }
  }

  /** Number of secrets known. */
  get size(): number {
    return this.#values.size;
  }

  /** Fails when any known secret occurs in `text`; `where` names the place in the failure. */
  assertAbsent(text: string, where: string): void {
    for (const [value, label] of this.#values) {
      if (text.includes(value)) {
        assert.fail(`${label} leaked in ${where}`);
      }
    }
  }
}

/** Files of a directory tree with their modes, relative paths as keys. */
export async function listTree(
  dir: string,
): Promise<Map<string, { mode: number; isFile: boolean; isSymlink: boolean }>> {
  const out = new Map<string, { mode: number; isFile: boolean; isSymlink: boolean }>();
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(join(dir, sub))) {
      const rel = sub === "" ? entry.name : join(sub, entry.name);
      const info = await Deno.lstat(join(dir, rel));
      out.set(rel, {
        mode: (info.mode ?? 0) & 0o777,
        isFile: info.isFile,
        isSymlink: info.isSymlink,
      });
      if (info.isDirectory) await walk(rel);
    }
  };
  try {
    await walk("");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

/** Whether a state-directory entry is the identity file or one of its temp files. */
export function isSecretFile(name: string): boolean {
  return name === "identity.json" || /^\.identity\.json\.[0-9a-f]+\.tmp$/.test(name);
}

/** Asserts the exit code and that the single error line matches `pattern`. */
export function assertFails(result: CliResult, code: number, pattern: RegExp): string {
  assert.equal(result.code, code, `exit ${result.code}, expected ${code}:\n${result.stderr}`);
  const line = errorLine(result);
  assert.match(line, pattern);
  return line;
}

/** Sleeps `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A running agent whose stderr is collected as it arrives. */
export interface RunningAgent extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Waits until a stderr line matches `pattern`; returns the line. */
  waitForLine(pattern: RegExp, ms?: number): Promise<string>;
  /** Sends `signal` (ignored when already exited). */
  kill(signal: Deno.Signal): void;
  /** Waits for the exit; stdout and stderr complete. */
  exited(): Promise<CliResult>;
}

/** One test's world: a dev platform, a state directory and a secret ledger. */
export class Harness implements AsyncDisposable {
  readonly platform: DevPlatform;
  readonly root: string;
  readonly stateDir: string;
  readonly secrets = new SecretLedger();
  readonly #running = new Set<RunningAgent>();

  private constructor(platform: DevPlatform, root: string) {
    this.platform = platform;
    this.root = root;
    this.stateDir = join(root, "state");
  }

  /** Starts a dev platform and makes a temp root (the state dir is `<root>/state`). */
  static async open(options: DevPlatformOptions = {}): Promise<Harness> {
    const platform = await startDevPlatform({ quiet: true, ...options });
    const root = await Deno.makeTempDir({ prefix: "oneconnect-faults-" });
    return new Harness(platform, root);
  }

  /** `<stateDir>/identity.json`. */
  get identityPath(): string {
    return join(this.stateDir, "identity.json");
  }

  /** `<stateDir>/status.json`. */
  get statusPath(): string {
    return join(this.stateDir, "status.json");
  }

  /** A fresh enrollment token, remembered as a secret. */
  token(): string {
    const token = this.platform.mintEnrollmentToken();
    this.secrets.add("enrollment token", token);
    return token;
  }

  /** Global flags every run gets. */
  #args(args: string[], stateDir: string): string[] {
    return ["--state-dir", stateDir, "--log-level", "debug", ...args];
  }

  /** Runs the CLI at debug level, then checks its output and the state dir for secrets. */
  async cli(
    args: string[],
    options: { stdin?: string; env?: Record<string, string>; stateDir?: string } = {},
  ): Promise<CliResult> {
    const stateDir = options.stateDir ?? this.stateDir;
    const result = await runAgent(this.#args(args, stateDir), options);
    this.secrets.assertAbsent(result.stdout, `stdout of ${args.join(" ")}`);
    this.secrets.assertAbsent(result.stderr, `stderr of ${args.join(" ")}`);
    await this.assertStateDirClean(stateDir);
    return result;
  }

  /** A fresh enrollment token (a secret) in a new owner-only file under the root; its path. */
  async tokenFile(): Promise<string> {
    const path = join(this.root, `token-${crypto.randomUUID()}`);
    await Deno.writeTextFile(path, this.token(), { mode: 0o600 });
    return path;
  }

  /** Enrolls with a fresh token over stdin; returns the identity and remembers its secrets. */
  async enroll(extra: string[] = []): Promise<Record<string, unknown>> {
    const result = await this.cli(enrollArgs(this.platform, "--token-file", "-", ...extra), {
      stdin: this.token(),
    });
    assert.equal(result.code, 0, `enroll failed:\n${result.stderr}`);
    const identity = await this.identity();
    this.secrets.addIdentity(identity);
    return identity;
  }

  /** The parsed identity.json. */
  async identity(): Promise<Record<string, unknown>> {
    return JSON.parse(await Deno.readTextFile(this.identityPath));
  }

  /** Rewrites identity.json (0600, atomically) with `change` applied. */
  async editIdentity(change: (identity: Record<string, unknown>) => void): Promise<void> {
    const identity = await this.identity();
    change(identity);
    await writeFileAtomic(this.identityPath, JSON.stringify(identity, null, 2) + "\n", 0o600);
  }

  /** The parsed status.json. */
  async status(): Promise<Record<string, unknown>> {
    return JSON.parse(await Deno.readTextFile(this.statusPath));
  }

  /** Scans every file of the state dir except the identity for secrets; temp files must be 0600. */
  async assertStateDirClean(stateDir = this.stateDir): Promise<void> {
    for (const [rel, info] of await listTree(stateDir)) {
      if (/\.tmp$/.test(rel)) {
        assert.equal(info.mode & 0o077, 0, `temp file ${rel} is readable by others`);
      }
      if (!info.isFile || isSecretFile(rel)) continue;
      const text = await Deno.readTextFile(join(stateDir, rel));
      this.secrets.assertAbsent(text, `state file ${rel}`);
    }
  }

  /** Spawns the CLI at debug level (JSON logs) and collects its output as it arrives. */
  spawn(args: string[], options: { stateDir?: string } = {}): RunningAgent {
    const child = spawnAgent(
      this.#args(["--log-format", "json", ...args], options.stateDir ?? this.stateDir),
    );
    return this.#watch(child, args);
  }

  /**
   * Spawns the CLI under strace, which holds every fsync and rename for `delayMs` before doing
   * it: the test sees each step of an atomic write on disk and can kill the agent in between.
   */
  spawnSlowed(
    args: string[],
    delayMs: number,
    options: { stateDir?: string } = {},
  ): RunningAgent {
    const set = "fsync,fdatasync,rename,renameat,renameat2";
    return this.spawnTraced(args, {
      ...options,
      strace: ["-e", `trace=${set}`, "-e", `inject=${set}:delay_enter=${delayMs * 1000}`],
    });
  }

  /**
   * Spawns the CLI under `strace -f -qq` with the extra strace options `strace` (which syscalls,
   * faults to inject); the trace goes to `traceFile` (`-y`: each fd shown with its path), or nowhere.
   */
  spawnTraced(
    args: string[],
    options: { strace: string[]; traceFile?: string; stateDir?: string },
  ): RunningAgent {
    const output = options.traceFile === undefined
      ? ["-o", "/dev/null"]
      : ["-y", "-o", options.traceFile];
    const child = new Deno.Command("strace", {
      args: [
        "-f",
        "-qq",
        ...output,
        ...options.strace,
        Deno.execPath(),
        "run",
        "--quiet",
        ...cachedFlags,
        MAIN,
        ...this.#args(["--log-format", "json", ...args], options.stateDir ?? this.stateDir),
      ],
      env: childEnv({ NO_COLOR: "1" }),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return this.#watch(
      withDeadline(child, SPAWN_DEADLINE_MS, `strace agent ${args.join(" ")}`),
      args,
    );
  }

  #watch(child: Deno.ChildProcess, args: string[]): RunningAgent {
    let err = "";
    let out = "";
    const pump = async (stream: ReadableStream<Uint8Array>, sink: (s: string) => void) => {
      const d = new TextDecoder();
      for await (const chunk of stream) sink(d.decode(chunk, { stream: true }));
    };
    const done = Promise.all([
      pump(child.stderr, (s) => err += s),
      pump(child.stdout, (s) => out += s),
      child.status,
    ]).then(([, , status]) => status);
    const secrets = this.secrets;
    const registry = this.#running;
    const running: RunningAgent = {
      child,
      stderr: () => err,
      async waitForLine(pattern, ms = 20_000) {
        let found: string | undefined;
        let exited = false;
        done.then(() => exited = true, () => exited = true);
        await until(
          () => {
            found = err.split("\n").find((l) => pattern.test(l));
            return found !== undefined || exited;
          },
          `a log line matching ${pattern}`,
          ms,
        );
        if (found === undefined) {
          throw new Error(`agent exited before logging ${pattern}:\n${err}`);
        }
        return found;
      },
      kill(signal) {
        // Descendants first: under strace the agent is the tracer's child.
        for (const pid of [...descendants(child.pid), child.pid]) {
          try {
            Deno.kill(pid, signal);
          } catch {
            // already exited
          }
        }
      },
      async exited() {
        const status = await done;
        registry.delete(running);
        secrets.assertAbsent(out, `stdout of ${args.join(" ")}`);
        secrets.assertAbsent(err, `stderr of ${args.join(" ")}`);
        return { code: status.code, stdout: out, stderr: err };
      },
      async [Symbol.asyncDispose]() {
        running.kill("SIGKILL");
        await done.catch(() => {});
      },
    };
    this.#running.add(running);
    return running;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const running of this.#running) await running[Symbol.asyncDispose]();
    await this.platform.close();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

const cachedFlags = await agentRunFlags();

/** Process ids below `pid` (Linux /proc; none elsewhere). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
      for (const child of text === "" ? [] : text.split(/\s+/).map(Number)) {
        out.push(...descendants(child), child);
      }
    }
  } catch {
    // gone, or not Linux
  }
  return out;
}

/** A tiny HTTP server on 127.0.0.1 answering with `handler`. */
export function hostileServer(
  handler: (req: Request) => Response | Promise<Response>,
): AsyncDisposable & { url: string; requests: () => number } {
  let count = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    count++;
    return handler(req);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    requests: () => count,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

function succeeds(command: string, args: string[]): boolean {
  try {
    return new Deno.Command(command, { args, stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

/** Whether this process may mount (Linux, root with CAP_SYS_ADMIN): probed once on a temp dir. */
export const CAN_MOUNT: boolean = Deno.build.os === "linux" && (() => {
  const dir = Deno.makeTempDirSync({ prefix: "oneconnect-mount-probe-" });
  try {
    if (!succeeds("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir])) return false;
    succeeds("umount", [dir]);
    return true;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
})();

/** Whether strace can trace and inject faults here (Linux, ptrace allowed). */
export const HAS_STRACE: boolean = Deno.build.os === "linux" &&
  succeeds("strace", ["-qq", "-o", "/dev/null", "-e", "inject=getpid:retval=1", "true"]);

/** Bind-mounts `dir` onto itself read-only until disposed. */
export function mountReadOnly(dir: string): Disposable {
  assert.ok(succeeds("mount", ["--bind", dir, dir]), `cannot bind-mount ${dir}`);
  if (!succeeds("mount", ["-o", "remount,bind,ro", dir])) {
    succeeds("umount", [dir]);
    assert.fail(`cannot remount ${dir} read-only`);
  }
  return { [Symbol.dispose]: () => void succeeds("umount", [dir]) };
}

/** Mounts a tmpfs of `kib` KiB with mode 0700 on `dir` until disposed (a disk that can fill). */
export function mountTmpfs(dir: string, kib: number): Disposable {
  assert.ok(
    succeeds("mount", ["-t", "tmpfs", "-o", `size=${kib}k,mode=0700`, "tmpfs", dir]),
    `cannot mount a tmpfs on ${dir}`,
  );
  return { [Symbol.dispose]: () => void succeeds("umount", [dir]) };
}

/** Fills the file system holding `dir` with a filler file until it reports ENOSPC. */
export async function fillDisk(dir: string): Promise<string> {
  const path = join(dir, "filler.bin");
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  const chunk = new Uint8Array(4096);
  try {
    while (true) await file.write(chunk);
  } catch (e) {
    if (!/No space left/i.test((e as Error).message)) throw e;
  } finally {
    file.close();
  }
  return path;
}
