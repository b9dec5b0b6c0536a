/**
 * `deno task mutate`: a mutation check. Applies each one-line mutation of a list, one at a time, to
 * a scratch copy of the repository (never the working tree), re-bundles it, runs that mutation's
 * covering tests, and reports each mutant as killed (a test failed), timed out (counted as killed)
 * or survived (every test passed: a promise no test defends). Exit 0 when every mutant is killed,
 * 1 when one survives, 2 when the list or the unmutated baseline is broken.
 *
 * Usage: deno task mutate [LIST.ts] [--filter TEXT] [--root DIR] [--timeout SECONDS]
 *   LIST.ts    a module exporting `mutations: Mutation[]` (default tasks/mutations/security.ts)
 *   --filter   only mutations whose file or promise contains TEXT
 *
 * @module
 */
import { pathToFileURL } from "node:url";
import type { Mutation } from "./mutations/mutation.ts";

/** What happened to one mutant. */
export interface MutantResult {
  mutation: Mutation;
  outcome: "killed" | "timeout" | "survived";
  seconds: number;
  /** The first failing test names the runner printed (killed mutants). */
  failures: string[];
}

/** Options of {@linkcode runMutations}. */
export interface MutateOptions {
  /** The repository to copy (deno.json at its top). */
  root: string;
  mutations: Mutation[];
  /** Per mutant; default 600 s. */
  timeoutMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** Directories never copied into the scratch repository. */
const SKIPPED = new Set([".git", "dist", "node_modules"]);

/** Copies `from` into `to` (files with their modes, symlinks as links), skipping {@linkcode SKIPPED}. */
export async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (SKIPPED.has(entry.name)) continue;
    const source = `${from}/${entry.name}`;
    const target = `${to}/${entry.name}`;
    if (entry.isSymlink) await Deno.symlink(await Deno.readLink(source), target);
    else if (entry.isDirectory) await copyTree(source, target);
    else await Deno.copyFile(source, target);
  }
}

function occurrences(text: string, part: string): number {
  return part === "" ? 0 : text.split(part).length - 1;
}

/**
 * Checks that every mutation names an existing file whose text holds `original` exactly once and
 * differs from `replacement`; returns the problems (empty when the list is usable).
 */
export async function listProblems(root: string, mutations: Mutation[]): Promise<string[]> {
  const problems: string[] = [];
  for (const [i, m] of mutations.entries()) {
    const at = `mutation ${i + 1} (${m.file}: ${m.promise})`;
    let text: string;
    try {
      text = await Deno.readTextFile(`${root}/${m.file}`);
    } catch (e) {
      problems.push(`${at}: cannot read the file: ${(e as Error).message}`);
      continue;
    }
    const n = occurrences(text, m.original);
    if (n !== 1) problems.push(`${at}: ${JSON.stringify(m.original)} occurs ${n} times, not once`);
    if (m.original === m.replacement) problems.push(`${at}: the replacement changes nothing`);
    if (m.tests.length === 0) problems.push(`${at}: no covering tests`);
    for (const test of m.tests) {
      if (!(await Deno.stat(`${root}/${test}`).then((s) => s.isFile, () => false))) {
        problems.push(`${at}: no test file ${test}`);
      }
    }
  }
  return problems;
}

interface TestRun {
  ok: boolean;
  timedOut: boolean;
  output: string;
}

const decoder = new TextDecoder();

/**
 * Runs `args` in `cwd` in a session of its own, so that on timeout the whole tree (the CLI
 * processes an end-to-end test spawned) is killed, not only deno.
 */
async function runCommand(
  cwd: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<TestRun> {
  const useSetsid = Deno.build.os === "linux";
  const child = new Deno.Command(useSetsid ? "setsid" : Deno.execPath(), {
    args: useSetsid ? [Deno.execPath(), ...args] : args,
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(useSetsid ? -child.pid : child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }, timeoutMs);
  try {
    const out = await child.output();
    return {
      ok: out.success && !timedOut,
      timedOut,
      output: decoder.decode(out.stdout) + decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Bundles the scratch copy when its deno.json has a `bundle` task, then runs `tests` there. */
async function runTests(scratch: string, tests: string[], timeoutMs: number): Promise<TestRun> {
  const config = JSON.parse(await Deno.readTextFile(`${scratch}/deno.json`).catch(() => "{}"));
  const env: Record<string, string> = {};
  if (config.tasks?.bundle !== undefined) {
    const bundle = await runCommand(scratch, ["task", "--quiet", "bundle"], {}, timeoutMs);
    // A mutant the bundler refuses is killed: it cannot ship.
    if (!bundle.ok) return bundle;
    env.ONECONNECT_TEST_ENTRY = "dist/bundle/main.js";
  }
  // --no-check: a mutant is judged by what it does; type errors are `deno task check`'s business.
  return await runCommand(
    scratch,
    ["test", "--quiet", "--no-check", "--allow-all", ...tests],
    env,
    timeoutMs,
  );
}

/** Names of the failed tests in a `deno test` output (its FAILURES section). */
function failedTests(output: string): string[] {
  const section = output.split(/\n\s*FAILURES\s*\n/)[1] ?? "";
  return section.split("\n").map((l) => /^(.+?) => /.exec(l)?.[1]?.trim()).filter((
    n,
  ): n is string => n !== undefined).slice(0, 3);
}

/**
 * Runs the baseline (every covering test on the unmutated copy, which must pass), then each
 * mutant in turn; the scratch copy is removed at the end.
 */
export async function runMutations(options: MutateOptions): Promise<MutantResult[]> {
  const log = options.log ?? (() => {});
  const timeoutMs = options.timeoutMs ?? 600_000;
  const problems = await listProblems(options.root, options.mutations);
  if (problems.length > 0) throw new Error(`Unusable mutation list:\n${problems.join("\n")}`);
  const scratch = await Deno.makeTempDir({ prefix: "oneconnect-mutate-" });
  try {
    await copyTree(options.root, scratch);
    const allTests = [...new Set(options.mutations.flatMap((m) => m.tests))].sort();
    log(`baseline: ${allTests.length} test files on the unmutated copy in ${scratch}`);
    const baseline = await runTests(scratch, allTests, timeoutMs);
    if (!baseline.ok) {
      throw new Error(`The baseline fails, so no mutant can be judged:\n${baseline.output}`);
    }
    const results: MutantResult[] = [];
    for (const [i, mutation] of options.mutations.entries()) {
      const path = `${scratch}/${mutation.file}`;
      const original = await Deno.readTextFile(path);
      await Deno.writeTextFile(
        path,
        original.replace(mutation.original, () => mutation.replacement),
      );
      const started = performance.now();
      let run: TestRun;
      try {
        run = await runTests(scratch, mutation.tests, timeoutMs);
      } finally {
        await Deno.writeTextFile(path, original);
      }
      const result: MutantResult = {
        mutation,
        outcome: run.timedOut ? "timeout" : run.ok ? "survived" : "killed",
        seconds: Math.round((performance.now() - started) / 100) / 10,
        failures: run.ok ? [] : failedTests(run.output),
      };
      results.push(result);
      log(`${i + 1}/${options.mutations.length} ${describe(result)}`);
    }
    return results;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/** One report line. */
export function describe(r: MutantResult): string {
  const by = r.failures.length > 0 ? ` by "${r.failures.join('", "')}"` : "";
  return `${r.outcome.toUpperCase()} ${r.mutation.file}: ${r.mutation.promise} (${r.seconds} s)${
    r.outcome === "killed" ? by : ""
  }`;
}

/** The summary: score and the survivors. */
export function summary(results: MutantResult[]): string {
  const killed = results.filter((r) => r.outcome !== "survived").length;
  const pct = results.length === 0 ? 100 : Math.round((killed / results.length) * 100);
  const survivors = results.filter((r) => r.outcome === "survived");
  const lines = [`mutation score: ${killed}/${results.length} killed (${pct}%)`];
  for (const s of survivors) {
    lines.push(
      `survived: ${s.mutation.file}: ${s.mutation.promise}: ${
        JSON.stringify(s.mutation.original)
      } -> ${JSON.stringify(s.mutation.replacement)} (tests: ${s.mutation.tests.join(" ")})`,
    );
  }
  return lines.join("\n");
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined) throw new Error(`${name} needs a value`);
  args.splice(i, 2);
  return value;
}

if (import.meta.main) {
  const args = [...Deno.args];
  const root = option(args, "--root") ?? new URL("..", import.meta.url).pathname;
  const filter = option(args, "--filter");
  const timeout = option(args, "--timeout");
  const list = args[0] ?? `${new URL("./mutations/security.ts", import.meta.url).pathname}`;
  const { mutations } = await import(pathToFileURL(list).href) as { mutations: Mutation[] };
  const chosen = mutations.filter((m) =>
    filter === undefined || m.file.includes(filter) || m.promise.includes(filter)
  );
  try {
    const results = await runMutations({
      root: root.replace(/\/$/, ""),
      mutations: chosen,
      timeoutMs: timeout === undefined ? undefined : Number(timeout) * 1000,
      log: (line) => console.log(line),
    });
    console.log(summary(results));
    Deno.exit(results.some((r) => r.outcome === "survived") ? 1 : 0);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
