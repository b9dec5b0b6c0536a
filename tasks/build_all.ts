/**
 * `deno task build-all` / `deno task compile`: type-checks `src/main.ts` once, bundles it (the
 * entry point that ships, see tasks/bundle.ts), then runs `deno compile` of the bundle per
 * release target with the shared permission flags, and publishes the binaries,
 * `dist/SHA256SUMS` and `dist/build.json` only when every requested target compiled.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };
import { AgentError, ExitCode, UsageError } from "../src/errors.ts";
import { shellQuote } from "../src/state/ownership.ts";
import { bundleArgs } from "./bundle.ts";
import { agentPermissionFlags, RUN_ONLY_FLAGS } from "./permissions.ts";

/** One release target: the short name, Deno's target triple and the file written under `dist/`. */
export interface Target {
  name: string;
  triple: string;
  file: string;
}

/** The release targets, in build order. */
export const TARGETS: readonly Target[] = [
  {
    name: "windows-amd64",
    triple: "x86_64-pc-windows-msvc",
    file: "oneconnect-agent-windows-amd64.exe",
  },
  { name: "darwin-arm64", triple: "aarch64-apple-darwin", file: "oneconnect-agent-darwin-arm64" },
  {
    name: "linux-amd64",
    triple: "x86_64-unknown-linux-gnu",
    file: "oneconnect-agent-linux-amd64",
  },
  {
    name: "linux-arm64",
    triple: "aarch64-unknown-linux-gnu",
    file: "oneconnect-agent-linux-arm64",
  },
];

/** The CLI entry point compiled into every binary, relative to the repository root. */
export const ENTRY = "src/main.ts";
/** Where the bundle is written inside the partial directory; `deno compile` compiles its main.js. */
export const BUNDLE_DIR_NAME = "bundle";
/** The PAC evaluator of `deno run` (a bundle entry point of its own), included in every binary. */
export const PAC_WORKER = "proxy/pac_evaluator.js";
/** Where `deno compile` writes; renamed into `dist/` only after every target succeeded. */
export const PARTIAL_DIR_NAME = ".partial";
/** Checksums file name, in `sha256sum -c` format. */
export const SUMS_FILE_NAME = "SHA256SUMS";
/** Build manifest file name. */
export const MANIFEST_FILE_NAME = "build.json";

/** A failed build step (exit 1); the message is one line. */
export class BuildError extends AgentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.internal, options);
  }
}

/** Finds targets by short name (`linux-amd64`) or triple, keeping the release order. */
export function resolveTargets(names: readonly string[]): Target[] {
  if (names.length === 0) return [...TARGETS];
  const wanted = new Set<Target>();
  for (const name of names) {
    const target = TARGETS.find((t) => t.name === name || t.triple === name);
    if (!target) {
      throw new UsageError(
        `Unknown target "${name}": expected one of ${
          TARGETS.map((t) => `"${t.name}"`).join(", ")
        } or their triples`,
      );
    }
    wanted.add(target);
  }
  return TARGETS.filter((t) => wanted.has(t));
}

/** The release target of the machine running the build (`deno task compile`). */
export function hostTarget(triple: string = Deno.build.target): Target {
  const target = TARGETS.find((t) => t.triple === triple);
  if (!target) {
    throw new UsageError(
      `Host "${triple}" is not a release target: build one of ${
        TARGETS.map((t) => `"${t.name}"`).join(", ")
      } with --target`,
    );
  }
  return target;
}

/** One `deno compile` invocation and where its output lands. */
export interface CompileStep {
  target: Target;
  /** Where `deno compile` writes (inside the partial directory). */
  partialPath: string;
  /** Where the binary is published. */
  finalPath: string;
  args: string[];
}

/** Every command a build runs, in order. */
export interface BuildPlan {
  deno: string;
  distDir: string;
  partialDir: string;
  checkArgs: string[];
  /** `deno bundle` of the checked entry point into the partial directory. */
  bundleArgs: string[];
  /** The bundled entry point every target compiles. */
  bundleEntry: string;
  compiles: CompileStep[];
}

/** Inputs of {@linkcode planBuild}. */
export interface PlanOptions {
  deno: string;
  distDir: string;
  targets: readonly Target[];
  permissionFlags: readonly string[];
}

/** Computes the exact commands: one type-check, one bundle, one `--no-check` compile per target. */
export function planBuild(options: PlanOptions): BuildPlan {
  const partialDir = join(options.distDir, PARTIAL_DIR_NAME);
  const bundleDir = join(partialDir, BUNDLE_DIR_NAME);
  const bundleEntry = join(bundleDir, "main.js");
  return {
    deno: options.deno,
    distDir: options.distDir,
    partialDir,
    checkArgs: ["check", ENTRY],
    bundleArgs: bundleArgs(bundleDir),
    bundleEntry,
    compiles: options.targets.map((target) => {
      const partialPath = join(partialDir, target.file);
      return {
        target,
        partialPath,
        finalPath: join(options.distDir, target.file),
        args: [
          "compile",
          // The single `deno check` above already type-checked this exact entry point.
          "--no-check",
          "--target",
          target.triple,
          "--output",
          partialPath,
          // The bundle's second entry (the `deno run` PAC evaluator); a binary evaluates a PAC
          // by starting itself (src/main.ts), but ships the whole bundle all the same.
          "--include",
          join(bundleDir, PAC_WORKER),
          ...compileFlags(options.permissionFlags),
          ...selfRunFlags(target),
          bundleEntry,
        ],
      };
    }),
  };
}

/**
 * The Windows binary's install path (packaging/windows/install-service.ps1), which it starts as
 * its PAC evaluator. It holds spaces, so it cannot sit in tasks/permissions.flags (read with
 * `$(cat ...)` by `deno task agent`); the Linux packages install `/usr/bin/oneconnect-agent` and macOS
 * `/usr/local/bin/oneconnect-agent`, both named there.
 */
export const WINDOWS_INSTALL_PATH = "C:\\Program Files\\OneConnect Agent\\oneconnect-agent.exe";

/** Run access to the binary itself where the shared list cannot name it. */
function selfRunFlags(target: Target): string[] {
  return target.triple.includes("windows") ? [`--allow-run=${WINDOWS_INSTALL_PATH}`] : [];
}

/** The shared flags a binary is compiled with: all but the `deno run`-only ones. */
function compileFlags(flags: readonly string[]): string[] {
  return flags.filter((flag) => !RUN_ONLY_FLAGS.includes(flag));
}

/** The plan as shell lines, as `--dry-run` prints it. */
export function formatPlan(plan: BuildPlan): string[] {
  const line = (args: string[]) => [plan.deno, ...args].map(shellQuote).join(" ");
  return [
    line(plan.checkArgs),
    line(plan.bundleArgs),
    ...plan.compiles.map((step) => line(step.args)),
    ...plan.compiles.map((step) =>
      `mv ${shellQuote(step.partialPath)} ${shellQuote(step.finalPath)}`
    ),
    `# then write ${join(plan.distDir, SUMS_FILE_NAME)} and ${
      join(plan.distDir, MANIFEST_FILE_NAME)
    }`,
  ];
}

/** What a finished command reported. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command args` in `cwd` and collects its output: the seam tests replace. */
export type Runner = (command: string, args: string[], cwd: string) => Promise<CommandResult>;

/** Runs commands as child processes. */
export const processRunner: Runner = async (command, args, cwd) => {
  const out = await new Deno.Command(command, {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
};

/** Deno prints progress and errors in colour even when piped; the matchers read plain text. */
function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/**
 * Turns a failed `deno compile` into one line. The runtime (`denort`) is fetched from
 * dl.deno.land on first use per target; offline that request is what fails.
 */
export function describeCompileFailure(target: Target, result: CommandResult): string {
  const text = stripAnsi(`${result.stderr}\n${result.stdout}`);
  const url = text.match(/error sending request for url \((\S+?)\)/)?.[1] ??
    text.match(/Download(?:ing)?\s+(\S*denort\S*)/)?.[1];
  const runtimeFetch = /Setting up base binary/.test(text) ||
    (url !== undefined && /denort/.test(url));
  if (runtimeFetch) {
    // anyhow prints the cause chain as numbered lines; the last one is the root cause.
    const chain = text.split(/^Stack backtrace:/m)[0] ?? "";
    const cause = [...chain.matchAll(/^\s*\d+: (.+)$/gm)].at(-1)?.[1]?.trim();
    return `Cannot compile target "${target.triple}": downloading the Deno runtime${
      url ? ` "${url}"` : ""
    } failed${cause ? ` (${cause})` : ""}; deno compile needs dl.deno.land once per target`;
  }
  const lastError = text.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("error:"))
    .at(-1);
  return `Cannot compile target "${target.triple}": deno compile exited with code ${result.code}${
    lastError ? ` (${lastError})` : ""
  }`;
}

/** Size and SHA-256 of one published binary. */
export interface Artifact {
  target: string;
  triple: string;
  file: string;
  size: number;
  sha256: string;
}

/** Hex SHA-256 of a file, streamed (binaries are ~100 MB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/** `SHA256SUMS` content: `<hex>  <file>` per line, names relative to `dist/`. */
export function formatSums(artifacts: readonly Artifact[]): string {
  return artifacts.map((a) => `${a.sha256}  ${a.file}\n`).join("");
}

/** What `dist/build.json` holds. */
export interface BuildManifest {
  name: string;
  version: string;
  deno: { deno: string; v8: string; typescript: string };
  entry: string;
  permissionFlags: string[];
  targets: Artifact[];
}

/** Seams and inputs of {@linkcode build}. */
export interface BuildOptions {
  targets: readonly Target[];
  dryRun?: boolean;
  /** Repository root: the working directory of every command. */
  root: string;
  /** Output directory, relative to `root` or absolute. */
  distDir: string;
  deno: string;
  permissionFlags: readonly string[];
  version: string;
  denoVersion: { deno: string; v8: string; typescript: string };
  runner: Runner;
  /** Progress output (one line per call). */
  print: (line: string) => void;
  /** Where a failing command's own output goes before the one-line error. */
  printError: (text: string) => void;
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

/**
 * Runs the plan. Nothing under `dist/` changes unless every target compiled; on success `dist/`
 * holds exactly this build's binaries (stale ones of other targets are removed so that
 * `SHA256SUMS` covers every binary present).
 */
export async function build(options: BuildOptions): Promise<BuildManifest | undefined> {
  const plan = planBuild(options);
  if (options.dryRun) {
    for (const line of formatPlan(plan)) options.print(line);
    return undefined;
  }
  const abs = (p: string) => (isAbsolute(p) ? p : join(options.root, p));
  const partialDir = abs(plan.partialDir);
  await Deno.mkdir(abs(plan.distDir), { recursive: true });
  // A build killed mid-compile leaves only this directory behind; start from a clean one.
  await Deno.remove(partialDir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.mkdir(partialDir);
  try {
    options.print(`Checking ${ENTRY}`);
    const check = await options.runner(plan.deno, plan.checkArgs, options.root);
    if (check.code !== 0) {
      options.printError(`${check.stdout}${check.stderr}`);
      throw new BuildError(`Type check of "${ENTRY}" failed; nothing was compiled`);
    }
    options.print(`Bundling ${ENTRY} -> ${plan.bundleEntry}`);
    const bundled = await options.runner(plan.deno, plan.bundleArgs, options.root);
    if (bundled.code !== 0) {
      options.printError(`${bundled.stdout}${bundled.stderr}`);
      throw new BuildError(`Bundling "${ENTRY}" failed; nothing was compiled`);
    }
    for (const step of plan.compiles) {
      options.print(`Compiling ${step.target.triple} -> ${step.finalPath}`);
      const result = await options.runner(plan.deno, step.args, options.root);
      if (result.code !== 0) {
        const line = describeCompileFailure(step.target, result);
        if (!line.includes("downloading the Deno runtime")) {
          options.printError(`${result.stdout}${result.stderr}`);
        }
        throw new BuildError(line);
      }
      const info = await Deno.stat(abs(step.partialPath)).catch(() => undefined);
      if (!info?.isFile || info.size === 0) {
        throw new BuildError(
          `Cannot compile target "${step.target.triple}": deno compile exited 0 but wrote no "${step.partialPath}"`,
        );
      }
    }
    const artifacts: Artifact[] = [];
    for (const step of plan.compiles) {
      const path = abs(step.partialPath);
      artifacts.push({
        target: step.target.name,
        triple: step.target.triple,
        file: step.target.file,
        size: (await Deno.stat(path)).size,
        sha256: await sha256File(path),
      });
    }
    for (const step of plan.compiles) await Deno.rename(abs(step.partialPath), abs(step.finalPath));
    const built = new Set(plan.compiles.map((s) => s.target.file));
    for (const stale of TARGETS.filter((t) => !built.has(t.file))) {
      await Deno.remove(join(abs(plan.distDir), stale.file)).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      });
    }
    const manifest: BuildManifest = {
      name: "oneconnect-agent",
      version: options.version,
      deno: options.denoVersion,
      entry: ENTRY,
      permissionFlags: compileFlags(options.permissionFlags),
      targets: artifacts,
    };
    await writeAtomically(join(abs(plan.distDir), SUMS_FILE_NAME), formatSums(artifacts));
    await writeAtomically(
      join(abs(plan.distDir), MANIFEST_FILE_NAME),
      `${JSON.stringify(manifest, null, 2)}\n`,
    );
    for (const a of artifacts) {
      options.print(`Built ${join(plan.distDir, a.file)} (${a.size} bytes, sha256 ${a.sha256})`);
    }
    options.print(`Wrote ${join(plan.distDir, SUMS_FILE_NAME)} and ${MANIFEST_FILE_NAME}`);
    return manifest;
  } finally {
    await Deno.remove(partialDir, { recursive: true }).catch(() => {});
  }
}

const HELP = `Usage: deno task build-all [--target <name>]... [--host] [--dry-run] [--dist <dir>]

Type-checks src/main.ts once, bundles it (deno bundle, tasks/bundle.ts), then compiles the bundle
into one binary per target with the shared permission flags (tasks/permissions.flags) into dist/, with dist/SHA256SUMS and dist/build.json.

Options:
  --target <name>  build only this target (repeatable): ${TARGETS.map((t) => t.name).join(", ")}
                   or a triple (${TARGETS.map((t) => t.triple).join(", ")})
  --host           build only for this machine (deno task compile)
  --dry-run        print the exact commands and exit
  --dist <dir>     output directory (default: dist; the deno tasks may write only there)
  -h, --help       show this help
`;

/** Parses the task's arguments and runs the build; returns the process exit code. */
export async function main(
  args: string[],
  seams: Partial<Pick<BuildOptions, "runner" | "deno" | "root" | "print" | "printError">> = {},
): Promise<number> {
  const printError = seams.printError ?? ((text: string) => {
    if (text.trim() !== "") console.error(text.trimEnd());
  });
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        strict: true,
        allowPositionals: false,
        options: {
          target: { type: "string", multiple: true, default: [] },
          host: { type: "boolean", default: false },
          "dry-run": { type: "boolean", default: false },
          dist: { type: "string", default: "dist" },
          help: { type: "boolean", short: "h", default: false },
        },
      });
    } catch (e) {
      throw new UsageError(`${e instanceof Error ? e.message : String(e)}; see --help`);
    }
    const { values } = parsed;
    if (values.help) {
      (seams.print ?? console.log)(HELP.trimEnd());
      return ExitCode.ok;
    }
    if (values.host && values.target.length > 0) {
      throw new UsageError("Use either --host or --target, not both");
    }
    const root = seams.root ?? new URL("..", import.meta.url).pathname;
    await build({
      targets: values.host ? [hostTarget()] : resolveTargets(values.target),
      dryRun: values["dry-run"],
      root,
      distDir: values.dist,
      deno: seams.deno ?? Deno.execPath(),
      permissionFlags: await agentPermissionFlags(),
      version: denoJson.version,
      denoVersion: {
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        typescript: Deno.version.typescript,
      },
      runner: seams.runner ?? processRunner,
      print: seams.print ?? ((line) => console.log(line)),
      printError,
    });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof AgentError) {
      printError(`error: ${error.message}`);
      return error.exitCode;
    }
    throw error;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
