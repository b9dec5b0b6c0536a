/** docs/security.md, the threat model: every test it names exists, and its platform claims hold. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { BIN_PATH } from "../tasks/package/layout.ts";
import { MACOS_BINARY_PATH } from "../tasks/package/macos_pkg.ts";
import { agentPermissionFlags, RUN_ONLY_FLAGS } from "../tasks/permissions.ts";
import { repoPath, sourceFiles, tempDir } from "./_support/helpers.ts";

const ROOT = repoPath();

/** Literal test names, and template names (`${…}` parts) as patterns, of every test file. */
async function testNames(): Promise<{ literal: Set<string>; templates: RegExp[] }> {
  const files = new Map<string, string>();
  await sourceFiles(ROOT, "tests", files);
  const literal = new Set<string>();
  const templates: RegExp[] = [];
  for (const text of files.values()) {
    const found = /(?:Deno\.test\(\s*|name:\s*)("(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)/g;
    for (const [, quoted] of text.matchAll(found)) {
      if (quoted!.startsWith('"')) literal.add(JSON.parse(quoted!));
      else {
        const parts = quoted!.slice(1, -1).split(/\$\{[^}]*\}/);
        const escaped = parts.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
        templates.push(new RegExp(`^${escaped.join(".+")}$`));
      }
    }
  }
  return { literal, templates };
}

Deno.test("docs/security.md names only tests that exist, and each defence row names one", async () => {
  const doc = await Deno.readTextFile(join(ROOT, "docs", "security.md"));
  const { literal, templates } = await testNames();
  const rows = doc.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| Defence"));
  const defenceRows = rows.filter((l) => l.split(" | ").length === 2 && !/^\|\s*-+\s*\|/.test(l));
  let named = 0;
  for (const row of defenceRows) {
    const cell = row.slice(row.lastIndexOf(" | ") + 3);
    const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    assert.ok(names.length > 0, `a defence without a test: ${row.slice(0, 120)}`);
    for (const name of names) {
      const exists = literal.has(name) || templates.some((t) => t.test(name));
      assert.ok(
        exists,
        `docs/security.md names a test that does not exist: ${JSON.stringify(name)}`,
      );
      named++;
    }
  }
  assert.ok(named >= 40, `only ${named} test names found: the table format changed?`);
});

Deno.test("the platform cannot make the agent run anything: constant programs, no code from data", async () => {
  const files = new Map<string, string>();
  await sourceFiles(ROOT, "src", files);
  // Processes start in one place (the PAC evaluator may run its script in a permissionless child).
  const spawners = [...files].filter(([, text]) => /Deno\.(Command|run)\b/.test(text))
    .map(([path]) => path).filter((p) => !/^src\/(child_process|proxy\/pac[^/]*)\.ts$/.test(p));
  assert.deepEqual(spawners, [], "only src/child_process.ts starts processes");
  // No code is built from data outside the PAC evaluator.
  const evaluators = [...files].filter(([, text]) =>
    /\beval\(|new Function\(|\bimport\(\s*[^"'\s]/.test(text)
  ).map(([path]) => path).filter((p) => !/^src\/proxy\/pac[^/]*\.ts$/.test(p));
  assert.deepEqual(evaluators, []);
  // Every program the agent may run is a constant absolute path of a system tool.
  const flags = [...await agentPermissionFlags()];
  for (const flag of flags) {
    assert.ok(!/^(-A|--allow-all|--allow-ffi|--allow-import)\b/.test(flag), flag);
    assert.notEqual(flag, "--allow-run", "every program is listed");
  }
  const run = flags.find((f) => f.startsWith("--allow-run="));
  assert.ok(run, "--allow-run is a list");
  const programs = run.slice("--allow-run=".length).split(",");
  // The agent's own executable, where the packages install it: the PAC evaluator is the agent
  // started again (`Deno.execPath()`, in src/proxy/pac.ts only), never a path from data.
  const self = new Set([BIN_PATH, MACOS_BINARY_PATH]);
  const pac = files.get(join("src", "proxy", "pac.ts")) ?? "";
  assert.match(pac, /new Deno\.Command\(Deno\.execPath\(\),/);
  for (const program of programs.filter((p) => !self.has(p))) {
    assert.match(program, /^(\/(usr\/)?s?bin\/[a-z_]+|C:\\Windows\\System32\\[\w\\.]+\.exe)$/);
    const literal = JSON.stringify(program).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const constant = new RegExp(`const [A-Z][A-Z0-9_]* = ${literal};`);
    const defined = [...files.values()].some((text) => constant.test(text));
    assert.ok(defined, `${program} is not an exported constant in src/`);
  }
  // And Deno enforces it: with the agent's flags, a shell cannot be started.
  await using dir = await tempDir();
  const script = `${dir.path}/try.ts`;
  await Deno.writeTextFile(
    script,
    `try { await new Deno.Command("/bin/sh", { args: ["-c", "true"] }).output(); console.log("ran"); }
     catch (e) { console.log(e.name); }`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags.filter((f) => !f.startsWith("--v8-flags")), script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(
    new TextDecoder().decode(out.stdout).trim(),
    "NotCapable",
    new TextDecoder().decode(out.stderr),
  );
  assert.ok(RUN_ONLY_FLAGS.every((f) => flags.includes(f)));
});
