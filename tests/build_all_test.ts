import assert from "node:assert/strict";
import { join } from "node:path";
import {
  build,
  BuildError,
  type BuildManifest,
  type BuildOptions,
  type CommandResult,
  describeCompileFailure,
  ENTRY,
  hostTarget,
  main,
  MANIFEST_FILE_NAME,
  processRunner,
  resolveTargets,
  type Runner,
  SUMS_FILE_NAME,
  TARGETS,
} from "../tasks/build_all.ts";
import { bundleArgs, WORKER_ENTRY } from "../tasks/bundle.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { UsageError } from "../src/errors.ts";
import denoJson from "../deno.json" with { type: "json" };
import { repoPath, tempDir } from "./_support/helpers.ts";

const ROOT = repoPath();
const FLAGS = await agentPermissionFlags();
/** What `deno compile` gets: `deno run` alone loads dynamic imports lazily (compile must embed them). */
const COMPILE_FLAGS = FLAGS.filter((f) => f !== "--unstable-lazy-dynamic-imports");
const FAKE_DENO = "/opt/deno-under-test/deno";

/** What `deno compile` 2.9.6 prints offline (captured on this machine, colours included). */
const OFFLINE_STDERR = [
  "\x1b[0m\x1b[32mCompile\x1b[0m src/main.ts to dist/.partial/oneconnect-agent-linux-arm64",
  "\x1b[0m\x1b[32mDownload\x1b[0m https://dl.deno.land/release/v2.9.6/denort-aarch64-unknown-linux-gnu.zip",
  "\x1b[0m\x1b[1m\x1b[31merror\x1b[0m: Writing deno compile executable to temporary file 'dist/.partial/oneconnect-agent-linux-arm64.tmp-a188475f61827919'",
  "",
  "Caused by:",
  "    0: Setting up base binary.",
  "    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-aarch64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known",
  "    2: client error (Connect)",
  "    3: dns error",
  "    4: failed to lookup address information: Name or service not known",
  "",
  "Stack backtrace:",
  "   0: <unknown>",
  "",
].join("\n");

interface Call {
  command: string;
  args: string[];
  cwd: string;
}

/** A runner that records calls; `compile` decides what each compile does to its output path. */
function recordingRunner(
  compile: (output: string, triple: string) => Promise<CommandResult>,
  check: CommandResult = { code: 0, stdout: "", stderr: "" },
  bundled: CommandResult = { code: 0, stdout: "", stderr: "" },
): { runner: Runner; calls: Call[] } {
  const calls: Call[] = [];
  const runner: Runner = async (command, args, cwd) => {
    calls.push({ command, args, cwd });
    if (args[0] === "check") return check;
    if (args[0] === "bundle") return bundled;
    const output = args[args.indexOf("--output") + 1]!;
    const triple = args[args.indexOf("--target") + 1]!;
    return await compile(join(cwd, output), triple);
  };
  return { runner, calls };
}

/** Writes distinct bytes per target, as a successful compile would write a binary. */
async function writeOutput(path: string, triple: string): Promise<CommandResult> {
  const bytes = new Uint8Array(4096 + triple.length);
  crypto.getRandomValues(bytes);
  await Deno.writeFile(path, bytes);
  return { code: 0, stdout: "", stderr: "" };
}

function options(root: string, runner: Runner, extra: Partial<BuildOptions> = {}): BuildOptions {
  return {
    targets: TARGETS,
    root,
    distDir: "dist",
    deno: FAKE_DENO,
    permissionFlags: FLAGS,
    version: "9.8.7",
    denoVersion: { deno: "2.9.6", v8: "15.0", typescript: "6.0" },
    runner,
    print: () => {},
    printError: () => {},
    ...extra,
  };
}

async function listTree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const rel = prefix + entry.name;
    if (entry.isDirectory) out.push(`${rel}/`, ...await listTree(join(dir, entry.name), `${rel}/`));
    else out.push(rel);
  }
  return out.sort();
}

Deno.test("build-all targets are the four release triples with their dist names", () => {
  assert.deepEqual(TARGETS.map((t) => [t.name, t.triple, `dist/${t.file}`]), [
    ["windows-amd64", "x86_64-pc-windows-msvc", "dist/oneconnect-agent-windows-amd64.exe"],
    ["darwin-arm64", "aarch64-apple-darwin", "dist/oneconnect-agent-darwin-arm64"],
    ["linux-amd64", "x86_64-unknown-linux-gnu", "dist/oneconnect-agent-linux-amd64"],
    ["linux-arm64", "aarch64-unknown-linux-gnu", "dist/oneconnect-agent-linux-arm64"],
  ]);
});

Deno.test("--target accepts short names and triples, keeps release order, rejects others", () => {
  assert.deepEqual(resolveTargets([]).map((t) => t.name), TARGETS.map((t) => t.name));
  assert.deepEqual(
    resolveTargets(["linux-arm64", "x86_64-pc-windows-msvc", "linux-arm64"]).map((t) => t.name),
    ["windows-amd64", "linux-arm64"],
  );
  assert.throws(() => resolveTargets(["linux-386"]), (e: unknown) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /^Unknown target "linux-386": expected one of "windows-amd64"/);
    return true;
  });
});

Deno.test("deno task compile picks the host's release target", () => {
  assert.equal(hostTarget("aarch64-apple-darwin").file, "oneconnect-agent-darwin-arm64");
  assert.equal(hostTarget("x86_64-unknown-linux-gnu").name, "linux-amd64");
  assert.throws(() => hostTarget("x86_64-apple-darwin"), UsageError);
});

Deno.test("build type-checks once, bundles, then compiles the bundle for every target with the shared permission flags", async () => {
  await using tmp = await tempDir();
  const { runner, calls } = recordingRunner(writeOutput);
  await build(options(tmp.path, runner));

  assert.equal(calls.length, 2 + TARGETS.length);
  assert.ok(calls.every((c) => c.command === FAKE_DENO && c.cwd === tmp.path));
  assert.deepEqual(calls[0]!.args, ["check", "src/main.ts"]);
  assert.deepEqual(calls[1]!.args, bundleArgs("dist/.partial/bundle"));
  assert.equal(calls.filter((c) => c.args[0] === "check").length, 1);
  for (const [i, target] of TARGETS.entries()) {
    assert.deepEqual(calls[i + 2]!.args, [
      "compile",
      "--no-check",
      "--target",
      target.triple,
      "--output",
      `dist/.partial/${target.file}`,
      "--include",
      "dist/.partial/bundle/proxy/pac_evaluator.js",
      ...COMPILE_FLAGS,
      // The Windows binary's own install path (its PAC evaluator), spaces and all.
      ...(target.name === "windows-amd64"
        ? ["--allow-run=C:\\Program Files\\OneConnect Agent\\oneconnect-agent.exe"]
        : []),
      "dist/.partial/bundle/main.js",
    ]);
  }
  // `deno run` loads dynamic imports lazily; `deno compile` must follow them to embed the chunks.
  assert.ok(FLAGS.includes("--unstable-lazy-dynamic-imports"));
  // The flags are exactly tasks/permissions.flags, the list `deno task agent` uses (plus run
  // access to that Deno itself, the PAC evaluator of `deno run`: agentRunFlags()).
  const flagsFile = await Deno.readTextFile(join(ROOT, "tasks/permissions.flags"));
  assert.deepEqual(FLAGS, flagsFile.split("\n").filter((l) => l.trim() !== ""));
  assert.match(
    denoJson.tasks.agent,
    /deno task --quiet bundle && .*\$\(cat tasks\/permissions\.flags\) --allow-run=\$\(deno eval 'console\.log\(Deno\.execPath\(\)\)'\) \$\(deno eval 'console\.log\(Deno\.realPathSync\(`dist\/bundle\/main\.js`\)\)'\)$/,
  );
});

Deno.test("build writes SHA256SUMS that sha256sum -c accepts, and build.json", async () => {
  await using tmp = await tempDir();
  const { runner } = recordingRunner(writeOutput);
  const manifest = await build(options(tmp.path, runner));
  const dist = join(tmp.path, "dist");

  assert.deepEqual(
    await listTree(dist),
    [...TARGETS.map((t) => t.file), MANIFEST_FILE_NAME, SUMS_FILE_NAME].sort(),
  );
  const verify = await new Deno.Command("sha256sum", { args: ["-c", SUMS_FILE_NAME], cwd: dist })
    .output();
  assert.equal(verify.code, 0, new TextDecoder().decode(verify.stderr));
  assert.deepEqual(
    new TextDecoder().decode(verify.stdout).trim().split("\n").sort(),
    TARGETS.map((t) => `${t.file}: OK`).sort(),
  );

  const onDisk: BuildManifest = JSON.parse(
    await Deno.readTextFile(join(dist, MANIFEST_FILE_NAME)),
  );
  assert.deepEqual(onDisk, manifest);
  assert.equal(onDisk.version, "9.8.7");
  assert.deepEqual(onDisk.deno, { deno: "2.9.6", v8: "15.0", typescript: "6.0" });
  assert.deepEqual(onDisk.permissionFlags, COMPILE_FLAGS);
  for (const artifact of onDisk.targets) {
    const path = join(dist, artifact.file);
    assert.equal(artifact.size, (await Deno.stat(path)).size);
    const independent = await new Deno.Command("sha256sum", { args: [path] }).output();
    assert.equal(artifact.sha256, new TextDecoder().decode(independent.stdout).split(" ")[0]);
  }

  // The check is not vacuous: a changed byte fails it.
  const victim = join(dist, TARGETS[2]!.file);
  const bytes = await Deno.readFile(victim);
  bytes[100] = bytes[100]! ^ 0xff;
  await Deno.writeFile(victim, bytes);
  const tampered = await new Deno.Command("sha256sum", {
    args: ["-c", "--quiet", SUMS_FILE_NAME],
    cwd: dist,
  }).output();
  assert.equal(tampered.code, 1);
  assert.match(new TextDecoder().decode(tampered.stdout), /oneconnect-agent-linux-amd64: FAILED/);
});

Deno.test("a compile that cannot download the runtime fails in one line and leaves dist/ as it was", async () => {
  await using tmp = await tempDir();
  const dist = join(tmp.path, "dist");
  await Deno.mkdir(dist);
  await Deno.writeTextFile(join(dist, "oneconnect-agent-linux-arm64"), "previous release");
  await Deno.writeTextFile(join(dist, SUMS_FILE_NAME), "previous sums\n");
  const before = await listTree(dist);

  const { runner, calls } = recordingRunner(async (output, triple) => {
    if (triple !== "aarch64-unknown-linux-gnu") return await writeOutput(output, triple);
    // deno compile writes next to --output first; a failure can leave that file behind.
    await Deno.writeTextFile(`${output}.tmp-a188475f61827919`, "partial");
    return { code: 1, stdout: "", stderr: OFFLINE_STDERR };
  });
  const errors: string[] = [];
  await assert.rejects(
    build(options(tmp.path, runner, { printError: (t) => errors.push(t) })),
    (e: unknown) => {
      assert.ok(e instanceof BuildError);
      assert.equal(e.exitCode, 1);
      assert.equal(
        e.message,
        'Cannot compile target "aarch64-unknown-linux-gnu": downloading the Deno runtime ' +
          '"https://dl.deno.land/release/v2.9.6/denort-aarch64-unknown-linux-gnu.zip" failed ' +
          "(failed to lookup address information: Name or service not known); " +
          "deno compile needs dl.deno.land once per target",
      );
      return true;
    },
  );
  assert.equal(calls.length, 2 + TARGETS.length);
  assert.deepEqual(errors, [], "deno's multi-line output is not repeated for a download failure");
  assert.deepEqual(await listTree(dist), before);
  assert.equal(
    await Deno.readTextFile(join(dist, "oneconnect-agent-linux-arm64")),
    "previous release",
  );
});

Deno.test("a subset build leaves dist/ holding exactly the binaries its SHA256SUMS lists", async () => {
  await using tmp = await tempDir();
  const { runner } = recordingRunner(writeOutput);
  await build(options(tmp.path, runner));
  await build(options(tmp.path, runner, { targets: resolveTargets(["linux-arm64"]) }));
  const dist = join(tmp.path, "dist");
  assert.deepEqual(
    await listTree(dist),
    [MANIFEST_FILE_NAME, SUMS_FILE_NAME, "oneconnect-agent-linux-arm64"].sort(),
  );
  const sums = await Deno.readTextFile(join(dist, SUMS_FILE_NAME));
  assert.match(sums, /^[0-9a-f]{64} {2}oneconnect-agent-linux-arm64\n$/);
});

Deno.test("a compile that exits 0 without writing its output is a failure", async () => {
  await using tmp = await tempDir();
  const { runner } = recordingRunner(() => Promise.resolve({ code: 0, stdout: "", stderr: "" }));
  await assert.rejects(
    build(options(tmp.path, runner, { targets: resolveTargets(["linux-amd64"]) })),
    /Cannot compile target "x86_64-unknown-linux-gnu": deno compile exited 0 but wrote no/,
  );
  assert.deepEqual(await listTree(join(tmp.path, "dist")), []);
});

Deno.test("a failed type check compiles nothing and shows deno's diagnostics", async () => {
  await using tmp = await tempDir();
  const { runner, calls } = recordingRunner(writeOutput, {
    code: 1,
    stdout: "",
    stderr: "TS2339 [ERROR]: Property 'x' does not exist\nerror: Type checking failed.\n",
  });
  const errors: string[] = [];
  await assert.rejects(
    build(options(tmp.path, runner, { printError: (t) => errors.push(t) })),
    /^BuildError: Type check of "src\/main.ts" failed; nothing was compiled$/,
  );
  assert.equal(calls.length, 1);
  assert.match(errors.join(""), /TS2339/);
  assert.deepEqual(await listTree(join(tmp.path, "dist")), []);
});

Deno.test("a failed bundle compiles nothing and shows deno's output", async () => {
  await using tmp = await tempDir();
  const { runner, calls } = recordingRunner(writeOutput, undefined, {
    code: 1,
    stdout: "",
    stderr: 'error: Module not found "file:///x/src/gone.ts".\n',
  });
  const errors: string[] = [];
  await assert.rejects(
    build(options(tmp.path, runner, { printError: (t) => errors.push(t) })),
    /^BuildError: Bundling "src\/main.ts" failed; nothing was compiled$/,
  );
  assert.equal(calls.length, 2);
  assert.match(errors.join(""), /Module not found/);
  assert.deepEqual(await listTree(join(tmp.path, "dist")), []);
});

Deno.test("other compile failures name the target and deno's last error line", () => {
  const line = describeCompileFailure(TARGETS[0]!, {
    code: 1,
    stdout: "",
    stderr: 'Compile src/main.ts\nerror: Module not found "file:///x/src/gone.ts".\n',
  });
  assert.equal(
    line,
    'Cannot compile target "x86_64-pc-windows-msvc": deno compile exited with code 1 ' +
      '(error: Module not found "file:///x/src/gone.ts".)',
  );
});

Deno.test("--dry-run prints the exact commands and writes nothing", async () => {
  await using tmp = await tempDir();
  const lines: string[] = [];
  const code = await main(["--dry-run", "--target", "linux-amd64", "--target", "darwin-arm64"], {
    root: tmp.path,
    deno: FAKE_DENO,
    runner: () => Promise.reject(new Error("dry run must not run anything")),
    print: (l) => lines.push(l),
  });
  assert.equal(code, 0);
  const quotedFlags = COMPILE_FLAGS.map((f) => (/[\\]/.test(f) ? `'${f}'` : f)).join(" ");
  assert.deepEqual(lines, [
    `${FAKE_DENO} check src/main.ts`,
    `${FAKE_DENO} bundle --quiet --platform deno --code-splitting --outdir dist/.partial/bundle src/main.ts src/proxy/pac_evaluator.ts`,
    `${FAKE_DENO} compile --no-check --target aarch64-apple-darwin --output dist/.partial/oneconnect-agent-darwin-arm64 --include dist/.partial/bundle/proxy/pac_evaluator.js ${quotedFlags} dist/.partial/bundle/main.js`,
    `${FAKE_DENO} compile --no-check --target x86_64-unknown-linux-gnu --output dist/.partial/oneconnect-agent-linux-amd64 --include dist/.partial/bundle/proxy/pac_evaluator.js ${quotedFlags} dist/.partial/bundle/main.js`,
    "mv dist/.partial/oneconnect-agent-darwin-arm64 dist/oneconnect-agent-darwin-arm64",
    "mv dist/.partial/oneconnect-agent-linux-amd64 dist/oneconnect-agent-linux-amd64",
    "# then write dist/SHA256SUMS and dist/build.json",
  ]);
  assert.deepEqual(await listTree(tmp.path), []);
});

Deno.test("build-all rejects an unknown target with exit 2 and one line", async () => {
  const errors: string[] = [];
  const code = await main(["--target", "freebsd-amd64"], {
    runner: () => Promise.reject(new Error("must not run")),
    printError: (t) => errors.push(t),
  });
  assert.equal(code, 2);
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /^error: Unknown target "freebsd-amd64": expected one of/);
  assert.ok(!errors[0]!.includes("\n"));
});

Deno.test("a fake deno that fails mid-compile leaves no partial file under dist/", async () => {
  await using tmp = await tempDir();
  // A stand-in for `deno` run as a real child process: it behaves like deno compile offline,
  // writing its temporary file next to --output before failing.
  const fake = join(tmp.path, "bin", "deno");
  await Deno.mkdir(join(tmp.path, "bin"));
  await Deno.writeTextFile(join(tmp.path, "offline.txt"), OFFLINE_STDERR);
  await Deno.writeTextFile(
    fake,
    `#!/bin/sh
[ "$1" = check ] && exit 0
[ "$1" = bundle ] && exit 0
out=""; while [ $# -gt 0 ]; do [ "$1" = --output ] && out="$2"; shift; done
printf 'half a binary' > "$out.tmp-a188475f61827919"
cat "${join(tmp.path, "offline.txt")}" >&2
exit 1
`,
  );
  await Deno.chmod(fake, 0o755);
  const errors: string[] = [];
  const code = await main(["--target", "darwin-arm64"], {
    root: tmp.path,
    deno: fake,
    runner: processRunner,
    print: () => {},
    printError: (t) => errors.push(t),
  });
  assert.equal(code, 1);
  assert.equal(errors.length, 1);
  assert.match(
    errors[0]!,
    /^error: Cannot compile target "aarch64-apple-darwin": downloading the Deno runtime "https:\/\/dl\.deno\.land\/release\/v2\.9\.6\/denort-aarch64-unknown-linux-gnu\.zip" failed/,
  );
  assert.deepEqual(await listTree(join(tmp.path, "dist")), []);
});

Deno.test("real deno compile on a tiny entry: a verified binary, or one line naming the runtime download", async () => {
  await using tmp = await tempDir();
  await Deno.mkdir(join(tmp.path, "src"));
  await Deno.writeTextFile(join(tmp.path, ENTRY), 'console.log("compiled fixture");\n');
  // The bundle's second entry point (the PAC Worker), as in the repository.
  await Deno.mkdir(join(tmp.path, "src/proxy"));
  await Deno.writeTextFile(join(tmp.path, WORKER_ENTRY), "self.close();\n");
  const target = hostTarget();
  const errors: string[] = [];
  const code = await main(["--target", target.name], {
    root: tmp.path,
    print: () => {},
    printError: (t) => errors.push(t),
  });
  const dist = join(tmp.path, "dist");
  if (code === 0) {
    // Deno's download server was reachable: the binary must run and match its checksum.
    const run = await new Deno.Command(join(dist, target.file)).output();
    assert.equal(new TextDecoder().decode(run.stdout), "compiled fixture\n");
    const verify = await new Deno.Command("sha256sum", { args: ["-c", SUMS_FILE_NAME], cwd: dist })
      .output();
    assert.equal(verify.code, 0);
  } else {
    assert.equal(code, 1);
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(
      errors[0]!,
      new RegExp(
        `^error: Cannot compile target "${target.triple}": downloading the Deno runtime "https://dl\\.deno\\.land/\\S+denort-${target.triple}\\.zip" failed \\(.+\\); deno compile needs dl\\.deno\\.land once per target$`,
      ),
    );
    assert.deepEqual(await listTree(dist), []);
  }
});

Deno.test("deno task build-all --dry-run and deno task compile --dry-run print the plan", async () => {
  const run = async (task: string, ...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "--quiet", task, "--dry-run", ...args],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).trim().split("\n");
  };
  const all = await run("build-all");
  assert.equal(all.filter((l) => / compile --no-check /.test(l)).length, 4);
  assert.equal(all.filter((l) => / check src\/main\.ts$/.test(l)).length, 1);
  const host = await run("compile");
  const compiles = host.filter((l) => / compile --no-check /.test(l));
  assert.equal(compiles.length, 1);
  assert.match(compiles[0]!, new RegExp(` --target ${hostTarget().triple} `));
});
