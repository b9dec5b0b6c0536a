/**
 * `deno task package`: turns the binaries of `deno task build-all` (dist/) into packages in
 * dist/packages/: .deb (amd64, arm64) with `dpkg-deb`, .rpm (x86_64, aarch64) with `rpmbuild`,
 * the .msi (tasks/package/msi.ts) and the macOS pkg plan (tasks/package/macos_pkg.ts) when their
 * binaries exist, all listed in SHA256SUMS. `--repo` also lays out a signed apt repository and a
 * signed dnf repository. docs/packages.md documents the result.
 *
 * @module
 */
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };
import { AgentError, errorMessage, ExitCode, UsageError } from "../src/errors.ts";
import { BuildError, formatSums, sha256File, TARGETS } from "./build_all.ts";
import { shellQuote } from "../src/state/ownership.ts";
import { buildMsi } from "./package/msi.ts";
import { macosPkgPlan } from "./package/macos_pkg.ts";
import { buildDeb } from "./package/deb.ts";
import { buildRpm } from "./package/rpm.ts";
import {
  checkVersion,
  hostLinuxArch,
  LINUX_ARCHES,
  type LinuxArch,
  payloadFiles,
} from "./package/layout.ts";
import { buildRepos, DEFAULT_REPO_URL } from "./package/repo.ts";

/** Package formats built for Linux. */
export type LinuxFormat = "deb" | "rpm";

/** Inputs of {@linkcode packageAll}. */
export interface PackageOptions {
  /** Repository root (packaging/ is read from here). */
  root: string;
  version: string;
  /** Where build-all wrote the binaries. */
  distDir: string;
  outDir: string;
  /** Package this executable for one target only (tests: a launcher script). */
  binary?: string;
  /** The target of `binary`; default the host's Linux architecture. */
  target?: string;
  formats: readonly LinuxFormat[];
  /** Also lay out signed apt and dnf repositories, signed with this gpg key (GNUPGHOME). */
  repoKey?: string;
  /** Where dist/packages will be served from (the dnf .repo file's URLs). */
  repoUrl?: string;
  /** The gpg home of `repoKey` (default: GNUPGHOME). */
  gnupgHome?: string;
  /** The changelog's date. */
  date: Date;
  print: (line: string) => void;
}

const TARGET_ALIASES: Record<string, string> = {
  "windows-x64": "windows-amd64",
  "macos-arm64": "darwin-arm64",
};

async function isElf(path: string): Promise<boolean> {
  using f = await Deno.open(path);
  const head = new Uint8Array(4);
  const n = await f.read(head);
  return n === 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isFile, () => false);
}

/** Builds every package it has a binary for; returns the paths written. */
export async function packageAll(o: PackageOptions): Promise<string[]> {
  const version = checkVersion(o.version);
  await Deno.mkdir(o.outDir, { recursive: true });
  const linux: Array<{ arch: LinuxArch; binary: string }> = [];
  let windows: string | undefined;
  let macos: string | undefined;
  if (o.binary !== undefined) {
    if (!(await exists(o.binary))) throw new UsageError(`No such file: "${o.binary}" (--binary)`);
    const target = TARGET_ALIASES[o.target ?? ""] ?? o.target ?? hostLinuxArch().target;
    const arch = LINUX_ARCHES.find((a) => a.target === target);
    if (arch) linux.push({ arch, binary: o.binary });
    else if (target === "windows-amd64") windows = o.binary;
    else if (target === "darwin-arm64") macos = o.binary;
    else {
      throw new UsageError(
        `Unknown target "${o.target}": expected one of ${TARGETS.map((t) => t.name).join(", ")}`,
      );
    }
  } else {
    for (const t of TARGETS) {
      const path = join(o.distDir, t.file);
      if (!(await exists(path))) continue;
      const arch = LINUX_ARCHES.find((a) => a.target === t.name);
      if (arch) linux.push({ arch, binary: path });
      else if (t.name === "windows-amd64") windows = path;
      else if (t.name === "darwin-arm64") macos = path;
    }
    if (linux.length === 0 && windows === undefined && macos === undefined) {
      throw new UsageError(
        `No binaries in "${o.distDir}": run deno task build-all first, or pass --binary <file>`,
      );
    }
  }
  const written: string[] = [];
  for (const { arch, binary } of linux) {
    const files = await payloadFiles(o.root, binary);
    const elf = await isElf(binary);
    if (o.formats.includes("deb")) {
      written.push(await buildDeb({ version, arch, files, outDir: o.outDir, date: o.date, elf }));
      o.print(`Built ${written.at(-1)}`);
    }
    if (o.formats.includes("rpm")) {
      written.push(await buildRpm({ version, arch, files, outDir: o.outDir, date: o.date }));
      o.print(`Built ${written.at(-1)}`);
    }
  }
  if (windows !== undefined) {
    try {
      written.push(await buildMsi({ version, binary: windows, outDir: o.outDir }));
    } catch (e) {
      if (e instanceof AgentError) throw e;
      throw new BuildError(errorMessage(e), { cause: e });
    }
    o.print(`Built ${written.at(-1)}`);
  }
  if (macos !== undefined) {
    const plan = await macosPkgPlan({ version, binary: macos, outDir: o.outDir });
    o.print("macOS pkg: staged; run on a Mac with the signing identities:");
    for (const c of plan.commands) o.print(`  ${c.map(shellQuote).join(" ")}`);
  }
  const sums = [];
  for (const path of written) {
    const target = basename(path);
    const size = (await Deno.stat(path)).size;
    sums.push({ target, triple: "", file: target, size, sha256: await sha256File(path) });
  }
  await Deno.writeTextFile(join(o.outDir, "SHA256SUMS"), formatSums(sums));
  o.print(`Wrote ${join(o.outDir, "SHA256SUMS")}`);
  if (o.repoKey !== undefined) {
    for (
      const line of await buildRepos({
        outDir: o.outDir,
        packages: written,
        key: o.repoKey,
        baseUrl: o.repoUrl,
        gnupgHome: o.gnupgHome,
      })
    ) {
      o.print(line);
    }
  }
  return written;
}

const HELP = `Usage: deno task package [--version <v>] [--binary <file> [--target <name>]]
                         [--format deb|rpm]... [--repo --sign-key <gpg key id>] [--out <dir>]

Turns the binaries of deno task build-all (dist/) into .deb (amd64, arm64), .rpm (x86_64,
aarch64), .msi and the macOS pkg plan in dist/packages/, with SHA256SUMS. See docs/packages.md.

Options:
  --version <v>      package version (default: deno.json "version", ${denoJson.version})
  --binary <file>    package this executable for one target only (default target: this host)
  --target <name>    the target of --binary: ${TARGETS.map((t) => t.name).join(", ")}
  --format <f>       build only this Linux format (repeatable): deb, rpm
  --repo             also lay out dist/packages/apt (apt-ftparchive, Release signed with gpg)
                     and dist/packages/rpm (createrepo_c, repomd.xml signed)
  --sign-key <id>    the gpg key (in GNUPGHOME) that signs the repositories; needed by --repo
  --repo-url <url>   where dist/packages is served (dnf .repo file; default ${DEFAULT_REPO_URL})
  --dist <dir>       where build-all wrote the binaries (default: dist)
  --out <dir>        output directory (default: dist/packages)
  -h, --help         show this help
`;

/** Parses the task's arguments and packages; returns the process exit code. */
export async function main(args: string[], print = (l: string) => console.log(l)): Promise<number> {
  try {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        strict: true,
        allowPositionals: false,
        options: {
          version: { type: "string", default: denoJson.version },
          binary: { type: "string" },
          target: { type: "string" },
          format: { type: "string", multiple: true, default: [] },
          repo: { type: "boolean", default: false },
          "sign-key": { type: "string" },
          "repo-url": { type: "string" },
          dist: { type: "string", default: "dist" },
          out: { type: "string", default: "dist/packages" },
          help: { type: "boolean", short: "h", default: false },
        },
      }));
    } catch (e) {
      throw new UsageError(`${e instanceof Error ? e.message : String(e)}; see --help`);
    }
    if (values.help) {
      print(HELP.trimEnd());
      return ExitCode.ok;
    }
    const formats = values.format.length === 0 ? ["deb", "rpm"] : values.format;
    for (const f of formats) {
      if (f !== "deb" && f !== "rpm") throw new UsageError(`Unknown format "${f}": deb or rpm`);
    }
    if (values.repo && values["sign-key"] === undefined) {
      throw new UsageError("--repo needs --sign-key <gpg key id> (the key in GNUPGHOME)");
    }
    if (values.target !== undefined && values.binary === undefined) {
      throw new UsageError("--target goes with --binary");
    }
    try {
      checkVersion(values.version);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const epoch = Deno.env.get("SOURCE_DATE_EPOCH");
    await packageAll({
      root: new URL("..", import.meta.url).pathname,
      version: values.version,
      distDir: values.dist,
      outDir: values.out,
      binary: values.binary,
      target: values.target,
      formats: formats as LinuxFormat[],
      repoKey: values.repo ? values["sign-key"] : undefined,
      repoUrl: values["repo-url"],
      date: epoch ? new Date(Number(epoch) * 1000) : new Date(),
      print,
    });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof AgentError) {
      console.error(`error: ${error.message}`);
      return error.exitCode;
    }
    throw error;
  }
}

if (import.meta.main) Deno.exitCode = await main(Deno.args);
