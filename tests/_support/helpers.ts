import assert from "node:assert/strict";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { agentRunFlags } from "../../tasks/permissions.ts";
import { sha256Hex } from "../../src/sha256.ts";

/**
 * The file system path of a `file:` URL as this platform spells it (`file:///C:/x%20y` is
 * `C:\x y` on Windows, never `/C:/x%20y`, which is what `URL.pathname` gives): node's
 * `fileURLToPath`, so that the Windows and macOS runners run the same tests.
 */
export function fromFileUrl(url: URL | string): string {
  return fileURLToPath(url);
}

/** Absolute path of the repository root, or of `parts` joined under it. */
export function repoPath(...parts: string[]): string {
  return resolve(fromFileUrl(new URL("../..", import.meta.url)), ...parts);
}

/**
 * Absolute path of the CLI entry point the end-to-end tests spawn: the source, or what ships when
 * `ONECONNECT_TEST_ENTRY` names it (`deno task test` bundles first and sets it to
 * `dist/bundle/main.js`, so the suites run against the bundle). Its real path: `dist/bundle` is a
 * symlink another `deno task bundle` may switch, and Deno finds lazy chunks beside the path it
 * started (tasks/bundle.ts).
 */
export const MAIN = testEntry();

function testEntry(): string {
  const entry = Deno.env.get("ONECONNECT_TEST_ENTRY");
  if (entry === undefined || entry === "") return repoPath("src", "main.ts");
  const path = isAbsolute(entry) ? entry : repoPath(entry);
  try {
    return Deno.realPathSync(path);
  } catch {
    throw new Error(`ONECONNECT_TEST_ENTRY "${entry}" does not exist: run deno task bundle`);
  }
}

/**
 * The Deno that runs the spawned CLI: this one, or the one `ONECONNECT_AGENT_DENO` names (the
 * cross-target stage sets it to npm's arm64 Deno, run by qemu-user through binfmt_misc, while the
 * tests and the dev platform run natively).
 */
export const AGENT_DENO = Deno.env.get("ONECONNECT_AGENT_DENO") || Deno.execPath();

/** The result of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode runAgent}. */
export interface RunAgentOptions {
  /** Environment for the child; only these variables (plus PATH and HOME) are passed. */
  env?: Record<string, string>;
  /** Bytes written to the child's stdin, which is then closed. */
  stdin?: string;
  /** Permission flags instead of the shared list (for minimality tests). */
  permissions?: string[];
  /** Further `deno run` flags after the permission flags (e.g. `--cert`). */
  denoFlags?: string[];
  signal?: AbortSignal;
  /** Working directory of the child (default: the test's). */
  cwd?: string;
  /** The entry point to run instead of {@linkcode MAIN}. */
  entry?: string;
  /**
   * Milliseconds the child may live before it is SIGKILLed and the test fails (its `status` and
   * `output()` reject): a hung agent fails the test, never hangs it. Defaults to
   * {@linkcode RUN_DEADLINE_MS} for {@linkcode runAgent}, {@linkcode SPAWN_DEADLINE_MS} otherwise.
   */
  deadlineMs?: number;
}

/** Default deadline of a one-shot CLI run (generous: 2 busy cores, a cold module cache). */
export const RUN_DEADLINE_MS = 90_000;
/** Default deadline of a spawned long-running agent (`run` loops, soak tests). */
export const SPAWN_DEADLINE_MS = 300_000;

/**
 * Gives `child` a deadline: past `ms` it is SIGKILLed, and its `status` and `output()` reject
 * with an error naming `what`, so the test fails instead of hanging or passing on a killed child.
 */
export function withDeadline(
  child: Deno.ChildProcess,
  ms: number,
  what: string,
): Deno.ChildProcess {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, ms);
  const fail = () => new Error(`${what} still running after ${ms / 1000} s: killed, test failed`);
  const status = child.status.then((s) => {
    clearTimeout(timer);
    if (timedOut) throw fail();
    return s;
  });
  // A caller that never awaits status must not turn the rejection into an unhandled one.
  status.catch(() => {});
  const output = child.output.bind(child);
  Object.defineProperty(child, "status", { value: status });
  Object.defineProperty(child, "output", {
    value: async () => {
      const out = await output();
      await status;
      return out;
    },
  });
  return child;
}

/** Spawns the CLI exactly as `deno task agent` does (same permission flags) and waits for it. */
export async function runAgent(args: string[], options: RunAgentOptions = {}): Promise<CliResult> {
  const child = spawnAgent(args, {
    ...options,
    piped: options.stdin !== undefined,
    deadlineMs: options.deadlineMs ?? RUN_DEADLINE_MS,
  });
  if (options.stdin !== undefined) await feedStdin(child, options.stdin);
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Writes `text` to a piped child's stdin and closes it. */
export async function feedStdin(child: Deno.ChildProcess, text: string): Promise<void> {
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
}

/** Spawns the CLI with the shared permission flags and returns the running child. */
export function spawnAgent(
  args: string[],
  options: RunAgentOptions & { piped?: boolean } = {},
): Deno.ChildProcess {
  const permissions = options.permissions ?? cachedFlags;
  const env = childEnv({ NO_COLOR: "1", ...options.env });
  if (env.DENO_DIR === "") delete env.DENO_DIR;
  const child = new Deno.Command(AGENT_DENO, {
    args: [
      "run",
      "--quiet",
      ...permissions,
      ...(options.denoFlags ?? []),
      options.entry ?? MAIN,
      ...args,
    ],
    env,
    clearEnv: true,
    cwd: options.cwd,
    stdin: options.piped ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal: options.signal,
  }).spawn();
  return withDeadline(
    child,
    options.deadlineMs ?? SPAWN_DEADLINE_MS,
    `oneconnect-agent ${args.join(" ")}`,
  );
}

const cachedFlags = await agentRunFlags();

/** The environment of a spawned child (with `clearEnv`): PATH, HOME, DENO_DIR if set, and `env`. */
export function childEnv(env: Record<string, string> = {}): Record<string, string> {
  const denoDir = Deno.env.get("DENO_DIR");
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    ...(denoDir ? { DENO_DIR: denoDir } : {}),
    ...env,
  };
}

/** Polls `condition` every 25 ms; fails the test (never hangs it) after `ms`. */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The JSON log lines (`--log-format json`) of an agent's stderr, parsed. */
export function logLines(stderr: string): Array<Record<string, unknown>> {
  return stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

/** A spawned `run` (see {@linkcode startRun}); SIGKILLed if still alive when disposed. */
export interface RunningRun extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Sends `signal` and resolves with the exit code, output and how long exiting took. */
  terminate(signal?: Deno.Signal): Promise<CliResult & { ms: number }>;
  /** Waits for the exit on its own. */
  exited(): Promise<CliResult>;
}

/** Spawns `run` with JSON logs in `stateDir` and collects its output. */
export function startRun(stateDir: string, args: string[] = []): RunningRun {
  const child = spawnAgent(["--state-dir", stateDir, "--log-format", "json", "run", ...args]);
  const output = child.output();
  const exited = async (): Promise<CliResult> => {
    const out = await output;
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  };
  return {
    child,
    async terminate(signal: Deno.Signal = "SIGTERM") {
      const start = performance.now();
      child.kill(signal);
      const result = await exited();
      return { ...result, ms: performance.now() - start };
    },
    exited,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await output.catch(() => {});
    },
  };
}

/**
 * The error `promise` rejects with, asserted to be a `type`; fails the test when `promise`
 * resolves or rejects with anything else.
 */
export async function rejectsWith<E>(
  promise: Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  type: abstract new (...args: any[]) => E,
): Promise<E> {
  const error = await promise.then(() => null, (e) => e);
  assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
  return error;
}

/** `host:port` of `url`, as proxies and their logs name a CONNECT target. */
export function hostPort(url: URL): string {
  return `${url.hostname}:${url.port}`;
}

/** Whether anything (a file, a directory, a dangling symlink) is at `path`. */
export async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** A loopback port that was free a moment ago (nothing listens on it: connections are refused). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The value of series `series` (name plus labels, as printed) in a Prometheus exposition. */
export function promSample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Whether something accepts TCP connections on the loopback `port`. */
export async function reachable(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Creates a temp directory and removes it when disposed. */
export async function tempDir(prefix = "oneconnect-test-"): Promise<
  AsyncDisposable & { path: string }
> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** The parts of a dev platform that enrolling needs. */
export interface EnrollTarget {
  url: URL;
  caFile: string;
  mintEnrollmentToken(): string;
}

/**
 * `enroll --url <target.url>`, with `--ca-file <target.caFile>` when it has one, then `extra`
 * (`--token-file -`, `--force`...). Global flags such as `--state-dir` go before it.
 */
export function enrollArgs(
  target: { url: URL | string; caFile?: string },
  ...extra: string[]
): string[] {
  const url = typeof target.url === "string" ? target.url : target.url.href;
  const ca = target.caFile === undefined ? [] : ["--ca-file", target.caFile];
  return ["enroll", "--url", url, ...ca, ...extra];
}

/**
 * Enrolls an agent in `stateDir` with the real CLI (token on stdin), at `url` or the platform's
 * own URL (e.g. an nginx in front of it); fails the test on a non-zero exit, with what `explain`
 * adds (an edge's error log). Returns the agent id.
 */
export async function enrollAgent(
  platform: EnrollTarget,
  stateDir: string,
  url: URL = platform.url,
  explain: () => Promise<string> = () => Promise.resolve(""),
): Promise<string> {
  const result = await runAgent(
    ["--state-dir", stateDir, ...enrollArgs({ url, caFile: platform.caFile }, "--token-file", "-")],
    { stdin: platform.mintEnrollmentToken() },
  );
  if (result.code !== 0) {
    throw new Error(`enroll failed (${result.code}): ${result.stderr}\n${await explain()}`);
  }
  const identity = JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
  return identity.agent_id;
}

/** The `error: ...` line of a failed run; asserts it is the only one and the last line. */
export function errorLine(result: CliResult): string {
  const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
  const errors = lines.filter((l) => l.startsWith("error:"));
  assert.equal(errors.length, 1, `expected one error line:\n${result.stderr}`);
  assert.equal(lines.at(-1), errors[0], `error line is not last:\n${result.stderr}`);
  return errors[0]!;
}

/** `run --once --auth <auth>` in `stateDir`. */
export function runOnce(stateDir: string, auth: "bearer" | "mtls"): Promise<CliResult> {
  return runAgent(["--state-dir", stateDir, "run", "--once", "--auth", auth]);
}

/** A fresh temp state dir holding `identity` with the modes enroll leaves (0700 dir, 0600 file). */
export async function stateDirWith(
  identity: Record<string, unknown>,
  prefix?: string,
): Promise<AsyncDisposable & { path: string }> {
  const dir = await tempDir(prefix);
  await Deno.chmod(dir.path, 0o700);
  await Deno.writeTextFile(join(dir.path, "identity.json"), JSON.stringify(identity), {
    mode: 0o600,
  });
  return dir;
}

/** The DER of the first PEM block in `pem` labelled `label`. */
export function pemDer(pem: string, label = "[A-Z ]+"): Uint8Array<ArrayBuffer> {
  const block = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`).exec(pem);
  if (block === null) throw new Error(`no PEM block ${label}`);
  return Uint8Array.from(atob(block[1]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}

/** SHA-256 of the DER of the first certificate in `pem`: the platform's client_cert_fingerprint. */
export function certificateFingerprint(pem: string): Promise<string> {
  return sha256Hex(pemDer(pem, "CERTIFICATE"));
}

/** A recorded tool output from tests/fixtures/telemetry (its README says where each comes from). */
export function telemetryFixture(name: string): string {
  return Deno.readTextFileSync(repoPath("tests", "fixtures", "telemetry", name));
}

/**
 * Whether CI requires every optional tool (`ONECONNECT_REQUIRE_TOOLS=1`, or the older
 * `ONECONNECT_REQUIRE_NGINX=1`): a test that would be skipped for a missing tool runs and fails.
 */
export function requireTools(): boolean {
  return ["ONECONNECT_REQUIRE_TOOLS", "ONECONNECT_REQUIRE_NGINX"].some((name) =>
    (Deno.env.get(name) ?? "") !== ""
  );
}

/**
 * The `ignore:` of a test that needs something (a tool, a machine id): skipped visibly when it is
 * missing, except under {@linkcode requireTools}, where the test runs and fails on the absence.
 */
export function skipWithout(available: boolean): boolean {
  return !available && !requireTools();
}

/** The absolute path of `command` on PATH (or of the first existing absolute candidate), else null. */
export function findTool(command: string, ...candidates: string[]): string | null {
  const dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").concat(["/usr/sbin", "/sbin"]);
  for (const path of [...candidates, ...dirs.map((d) => join(d, command))]) {
    try {
      const info = Deno.statSync(path);
      if (info.isFile && (info.mode ?? 0o111) & 0o111) return path;
    } catch {
      // not there
    }
  }
  return null;
}

/**
 * CPU milliseconds the calling thread spends in `work` (Linux `/proc/thread-self/schedstat`, so
 * that other tests on a loaded machine do not count), or its wall time where that file is absent.
 */
export function threadCpuMs(work: () => void): number {
  const read = () => {
    try {
      return Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]) / 1e6;
    } catch {
      return undefined;
    }
  };
  const before = read();
  const wall = performance.now();
  work();
  const after = read();
  return before === undefined || after === undefined ? performance.now() - wall : after - before;
}

/** `status --json` of `stateDir`, parsed; fails the test unless it exits 0. */
export async function statusJson(stateDir: string): Promise<Record<string, unknown>> {
  const result = await runAgent(["--state-dir", stateDir, "status", "--json"]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

/** What (f)stat says of a regular file: mode 0600 and root's unless told. */
export function regularFile(
  { uid = 0, size = 0, mode = 0o600 }: { uid?: number | null; size?: number; mode?: number } = {},
): Deno.FileInfo {
  return {
    isFile: true,
    isDirectory: false,
    isSymlink: false,
    uid,
    size,
    mode: 0o100000 | mode,
  } as Deno.FileInfo;
}

/** Adds every `.ts` file under `root/dir` (recursively) to `out`, keyed by its path from `root`. */
export async function sourceFiles(
  root: string,
  dir: string,
  out: Map<string, string>,
): Promise<void> {
  for await (const entry of Deno.readDir(join(root, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) await sourceFiles(root, path, out);
    else if (entry.isFile && path.endsWith(".ts")) {
      out.set(path, await Deno.readTextFile(join(root, path)));
    }
  }
}
