import assert from "node:assert/strict";
import { commandHelp, COMMANDS, exitCodesHelp, parseArgv, programHelp } from "../src/cli.ts";
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
  assert.equal(usageMessage(["run", "--once=yes"]), "Unknown option '--once=yes' (see --help)");
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
