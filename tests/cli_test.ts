import assert from "node:assert/strict";
import { join } from "node:path";
import { commandHelp, COMMANDS, parseArgv, programHelp, runCli } from "../src/cli.ts";
import { exitCodesHelp } from "../src/cli_parser.ts";
import { reportError } from "../src/error_report.ts";
import { EXIT_CODE_MEANINGS, UsageError } from "../src/errors.ts";

function usageMessage(argv: string[]): string {
  try {
    parseArgv(argv);
  } catch (e) {
    assert.ok(e instanceof UsageError, `expected a UsageError, got ${e}`);
    return e.message;
  }
  assert.fail(`${argv.join(" ")} parsed`);
}

Deno.test("cli parser takes global flags before and after the command, and --flag=value", () => {
  const inv = parseArgv(["--state-dir", "/a", "run", "--interval=5", "--log-level", "debug"]);
  assert.equal(inv.kind, "command");
  if (inv.kind !== "command") return;
  assert.equal(inv.command.name, "run");
  assert.deepEqual(inv.flags, { "state-dir": "/a", interval: 5, "log-level": "debug" });
});

Deno.test("cli parser applies defaults and lets the last repeated flag win", () => {
  const inv = parseArgv(["enroll", "--url", "https://a", "--url", "https://b", "--force"]);
  assert.ok(inv.kind === "command");
  assert.deepEqual(inv.flags, { url: "https://b", force: true, timeout: 120 });
});

Deno.test("cli parser answers help and version before validating the rest", () => {
  assert.deepEqual(parseArgv(["--version"]), { kind: "version" });
  assert.deepEqual(parseArgv(["-V"]), { kind: "version" });
  assert.deepEqual(parseArgv(["--help"]), { kind: "help", command: undefined });
  const run = COMMANDS.find((c) => c.name === "run");
  assert.deepEqual(parseArgv(["run", "-h"]), { kind: "help", command: run });
  assert.deepEqual(parseArgv(["help", "run"]), { kind: "help", command: run });
});

Deno.test("cli parser names the bad argument in the commander-compatible messages", () => {
  assert.equal(usageMessage(["run", "--bogus"]), "Unknown option '--bogus' (see --help)");
  assert.equal(usageMessage(["run", "--once=yes"]), "Option '--once' takes no value (see --help)");
  assert.equal(usageMessage(["status", "--once"]), "Unknown option '--once' (see --help)");
  assert.equal(usageMessage(["frob"]), "Unknown command 'frob' (see --help)");
  assert.equal(
    usageMessage(["run", "--interval"]),
    "Option '--interval <seconds>' argument missing (see --help)",
  );
  assert.equal(
    usageMessage(["run", "--interval", "1.5"]),
    "Option '--interval <seconds>' argument '1.5' is invalid. expected seconds from 1 to 86400 (see --help)",
  );
  assert.equal(
    usageMessage(["run", "now"]),
    "Too many arguments for 'run'. Expected 0 arguments but got 1. (see --help)",
  );
  assert.equal(usageMessage([]), "No command given: see oneconnect-agent --help");
});

Deno.test("cli help lists every command and flag of the tables and every exit code", () => {
  const help = programHelp();
  for (const c of COMMANDS) {
    assert.match(help, new RegExp(`\\n  ${c.name} `));
    const sub = commandHelp(c);
    for (const f of c.flags) assert.ok(sub.includes(`--${f.name}`), `${c.name} lacks --${f.name}`);
  }
  for (const [code] of EXIT_CODE_MEANINGS) {
    assert.match(exitCodesHelp(), new RegExp(`\\n  ${code}  `));
  }
  assert.ok(help.includes(exitCodesHelp()));
});

Deno.test("runCli tells main the effective log level, agent.json's included, before the command fails", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-cli-test-" });
  try {
    await Deno.chmod(dir, 0o700);
    await Deno.writeTextFile(join(dir, "agent.json"), JSON.stringify({ log_level: "debug" }));
    await Deno.chmod(join(dir, "agent.json"), 0o600);
    const levels: string[] = [];
    await assert.rejects(
      runCli(["status", "--state-dir", dir], {
        env: () => undefined,
        shutdown: new AbortController().signal,
        onLogLevel: (level) => levels.push(level),
      }),
      (e: Error) => e.name !== "AssertionError",
    );
    assert.deepEqual(levels, ["debug"]);
    const flagged: string[] = [];
    await assert.rejects(
      runCli(["status", "--state-dir", dir, "--log-level", "warn"], {
        env: () => undefined,
        shutdown: new AbortController().signal,
        onLogLevel: (level) => flagged.push(level),
      }),
    );
    assert.deepEqual(flagged, ["warn", "warn"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an internal error shows its stack only when the effective log level is debug", () => {
  const lines: string[] = [];
  const write = Deno.stderr.writeSync;
  try {
    Deno.stderr.writeSync = (p: Uint8Array) => {
      lines.push(new TextDecoder().decode(p));
      return p.length;
    };
    assert.equal(reportError(new Error("boom"), false), 1);
    const quiet = lines.join("");
    lines.length = 0;
    assert.equal(reportError(new Error("boom"), true), 1);
    const loud = lines.join("");
    assert.doesNotMatch(quiet, /\n\s+at /);
    assert.match(loud, /^error: internal error: boom .*\nError: boom\n\s+at /s);
  } finally {
    Deno.stderr.writeSync = write;
  }
});

Deno.test("README's exit-code table lists exactly the codes of EXIT_CODE_MEANINGS, in order", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const section = readme.split("\n## Exit codes\n")[1]!.split("\n## ")[0]!;
  const rows = [...section.matchAll(/^\| (\d+) \| ([^|]+) \|/gm)];
  assert.deepEqual(rows.map((r) => Number(r[1])), EXIT_CODE_MEANINGS.map(([code]) => code));
  for (const [i, [, meaning]] of EXIT_CODE_MEANINGS.entries()) {
    // The README may say more, but starts with the same first words as --help.
    const words = meaning.split(/[\s(,:]+/).slice(0, 3).join(" ");
    assert.ok(
      rows[i]![2]!.replace(/[\s(,:`]+/g, " ").startsWith(words),
      `${rows[i]![2]} vs ${words}`,
    );
  }
});
