/** Spawning the real CLI and the floor exactly as `deno task agent` runs them. */
import { BUNDLE_ENTRY } from "../bundle.ts";
import { agentRunFlags } from "../permissions.ts";

/**
 * The CLI entry point agents are spawned from: what ships, the bundle. `deno task bench` bundles
 * into its own temp directory and sets it, so a rebuild of `dist/bundle/` cannot swap chunks
 * under running agents.
 */
let agentEntry = new URL(`../../${BUNDLE_ENTRY}`, import.meta.url).pathname;

/** Spawns agents from `path` (an absolute bundled entry point) from now on. */
export function setAgentEntry(path: string): void {
  agentEntry = path;
}
/** Absolute path of the bare floor script. */
export const FLOOR = new URL("./floor.ts", import.meta.url).pathname;
/** Absolute path of the floor with one dependency loaded (npm, zod or x509). */
export const FLOOR_DEPS = new URL("./floor_deps.ts", import.meta.url).pathname;

const flags = await agentRunFlags();
/** The V8 flags the shared list gives every agent process (and the compiled binaries). */
export const SHARED_V8_FLAGS = flags.filter((f) => f.startsWith("--v8-flags="));

/** Environment of every child: nothing of ours leaks in (the CLI reads ONECONNECT_* vars). */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    NO_COLOR: "1",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  return env;
}

/** Options of {@linkcode spawnScript}. */
export interface SpawnOptions {
  /** V8 flags added to the shared ones, e.g. `["--single-threaded"]`. */
  v8Flags?: string[];
  /** Leave out the shared list's `--v8-flags` (to price them). */
  withoutSharedV8Flags?: boolean;
  stdin?: "piped" | "null";
}

/** Spawns `script` with the agent's permission flags; stdout and stderr are piped. */
export function spawnScript(
  script: string,
  args: string[],
  options: SpawnOptions = {},
): Deno.ChildProcess {
  const v8 = options.v8Flags?.length ? [`--v8-flags=${options.v8Flags.join(",")}`] : [];
  const shared = options.withoutSharedV8Flags
    ? flags.filter((f) => !SHARED_V8_FLAGS.includes(f))
    : flags;
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...v8, ...shared, script, ...args],
    env: childEnv(),
    clearEnv: true,
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Spawns the agent CLI with `--state-dir` and `args`. */
export function spawnAgent(
  stateDir: string,
  args: string[],
  options: SpawnOptions = {},
): Deno.ChildProcess {
  return spawnScript(agentEntry, ["--state-dir", stateDir, ...args], options);
}

/** A child's exit code and its output, decoded. */
export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

/** Waits for `child` and decodes its output. */
export async function finish(child: Deno.ChildProcess): Promise<Finished> {
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Enrolls a new agent into `stateDir` through the real CLI; returns its agent id. */
export async function enrollAgent(
  stateDir: string,
  platform: { url: URL; caFile: string; mintEnrollmentToken(): string },
): Promise<string> {
  const child = spawnAgent(stateDir, [
    "enroll",
    "--url",
    platform.url.href,
    "--ca-file",
    platform.caFile,
    "--token-file",
    "-",
  ], { stdin: "piped" });
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(platform.mintEnrollmentToken() + "\n"));
  await writer.close();
  const out = await finish(child);
  if (out.code !== 0) {
    throw new Error(`Cannot enroll a bench agent: exit ${out.code}: ${out.stderr.trim()}`);
  }
  const identity = JSON.parse(await Deno.readTextFile(`${stateDir}/identity.json`));
  return String(identity.agent_id);
}

/** SIGKILLs every child still running (a bench's `finally`). */
export function killAll(children: readonly Deno.ChildProcess[]): void {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }
}

/** Sends SIGTERM and waits for the child; kills it if it has not gone after `graceMs`. */
export async function stop(child: Deno.ChildProcess, graceMs = 3000): Promise<Finished> {
  const done = finish(child);
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }, graceMs);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}
