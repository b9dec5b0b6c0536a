/**
 * The one way the agent starts a child process (`sw_vers`, `ioreg`, `reg`, `icacls`, ...): an
 * absolute path, no shell, and a cleared environment, since ours may hold the enrollment token
 * (`ONECONNECT_ENROLLMENT_TOKEN`), proxy credentials or other secrets a child must not inherit.
 */
import { timeoutSignal } from "./deadline.ts";

/** How a child process ended, with its output decoded as UTF-8. */
export interface ChildResult {
  success: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode runChild}. */
export interface ChildOptions {
  /** Kills the child after this long (default 10 s). */
  timeoutMs?: number;
  /** Extra variables the child needs; added to {@linkcode childEnvironment}. */
  env?: Record<string, string>;
}

/**
 * The whole environment a child gets: a fixed system `PATH` (and `SystemRoot` on Windows, which
 * Windows programs need to load), the C locale for parseable output, nothing else.
 */
export function childEnvironment(os: typeof Deno.build.os = Deno.build.os): Record<string, string> {
  if (os === "windows") {
    return {
      SystemRoot: "C:\\Windows",
      PATH: "C:\\Windows\\System32;C:\\Windows",
    };
  }
  return { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", LC_ALL: "C" };
}

const decoder = new TextDecoder();

/** Runs the program at absolute `path` with a cleared environment; never throws on a non-zero exit. */
export async function runChild(
  path: string,
  args: string[],
  options: ChildOptions = {},
): Promise<ChildResult> {
  const { signal, deadline } = timeoutSignal(options.timeoutMs ?? 10_000);
  using _ = deadline;
  const out = await new Deno.Command(path, {
    args,
    clearEnv: true,
    env: { ...childEnvironment(), ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  return {
    success: out.success,
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** Options of {@linkcode childStdout}. */
export interface StdoutOptions extends ChildOptions {
  /** Resolves whatever the exit code (`head` exits 1 when one of its files is missing). */
  anyExit?: boolean;
  /** Words before the exit code in the rejection: `"code "` (the default) or `""`. */
  codeLabel?: string;
}

/**
 * {@linkcode runChild}'s stdout; rejects with `<path> exited with code <n>` on a non-zero exit
 * unless `anyExit`.
 */
export async function childStdout(
  path: string,
  args: string[],
  options: StdoutOptions = {},
): Promise<string> {
  const out = await runChild(path, args, options);
  if (!out.success && !options.anyExit) {
    throw new Error(`${path} exited with ${options.codeLabel ?? "code "}${out.code}`);
  }
  return out.stdout;
}
