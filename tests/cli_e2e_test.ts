import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { enrollAgent, runAgent, tempDir } from "./_support/helpers.ts";

function assertOneLineError(stderr: string, pattern: RegExp) {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line, got: ${stderr}`);
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, pattern);
}

Deno.test("cli rejects an unknown flag with exit 2 and one line", async () => {
  const r = await runAgent(["run", "--bogus"]);
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /Unknown option '--bogus'/);
  assert.equal(r.stdout, "");
});

Deno.test("cli rejects an invalid --log-level with exit 2 naming the value", async () => {
  await using dir = await tempDir();
  const r = await runAgent(["status", "--log-level", "loud", "--state-dir", dir.path]);
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /Invalid log level "loud" \(--log-level\): expected one of debug/);
});

Deno.test("cli rejects a malformed --url with exit 2 before any connection", async () => {
  await using dir = await tempDir();
  const r = await runAgent(["enroll", "--url", "htp:/nope", "--state-dir", dir.path]);
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /Invalid platform URL "htp:\/nope" \(--url\)/);
});

Deno.test("cli refuses plain http to a non-loopback host with exit 2", async () => {
  await using dir = await tempDir();
  const r = await runAgent([
    "enroll",
    "--url",
    "http://platform.example.com",
    "--state-dir",
    dir.path,
  ]);
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /Refusing plain http:\/\/ to non-loopback host/);
});

Deno.test("cli rejects an out-of-range --interval with exit 2", async () => {
  const r = await runAgent(["run", "--interval", "0"]);
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /--interval .* expected seconds from 1 to 86400/);
});

Deno.test("cli environment variables configure the agent (invalid env value named)", async () => {
  await using dir = await tempDir();
  const r = await runAgent(["status"], {
    env: { ONECONNECT_STATE_DIR: dir.path, ONECONNECT_LOG_FORMAT: "xml" },
  });
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /Invalid log format "xml" \(ONECONNECT_LOG_FORMAT\)/);
});

Deno.test("cli rejects a corrupt agent.json naming the file and field", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(join(dir.path, "agent.json"), JSON.stringify({ auth: "kerberos" }));
  const r = await runAgent(["status", "--state-dir", dir.path]);
  assert.equal(r.code, 2);
  assertOneLineError(r.stderr, /agent\.json.*"auth" is "kerberos"/);
});

Deno.test("cli --help shows every command, the global flags and the exit codes", async () => {
  const r = await runAgent(["--help"]);
  assert.equal(r.code, 0);
  for (
    const word of [
      "enroll",
      "run",
      "status",
      "inventory",
      "unenroll",
      "renew",
      "--state-dir",
      "--log-level",
      "--log-format",
      "--version",
      "Exit codes:",
      "6  already enrolled",
    ]
  ) assert.ok(r.stdout.includes(word), `--help lacks ${word}`);
  const sub: Record<string, string[]> = {
    enroll: ["--url", "--token-file", "--ca-file", "--force", "--check", "--timeout"],
    run: ["--once", "--auth", "--interval"],
    status: ["--json"],
    inventory: [],
    unenroll: ["--yes", "--local-only", "--auth"],
    renew: ["--auth"],
  };
  for (const [command, flags] of Object.entries(sub)) {
    const h = await runAgent([command, "--help"]);
    assert.equal(h.code, 0);
    assert.match(
      h.stdout,
      /Example:\n {2}\$ oneconnect-agent /,
      `${command} --help has no example`,
    );
    for (const flag of flags) assert.ok(h.stdout.includes(flag), `${command} --help lacks ${flag}`);
  }
});

Deno.test("cli --version prints the version from deno.json", async () => {
  const r = await runAgent(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `oneconnect-agent ${denoJson.version}`);
});

Deno.test("cli without a command exits 2", async () => {
  const r = await runAgent([]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /error: No command given/);
});

Deno.test("crash output at --log-level debug carries no registered secret, in message or stack", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  await enrollAgent(platform, dir.path);
  const identity = JSON.parse(await Deno.readTextFile(join(dir.path, "identity.json")));
  const token: string = identity.service_account_token;
  // The agent registers this token when it loads the identity; a module preloaded into the agent
  // then leaves a rejected promise unhandled (an internal error, whatever the command catches)
  // when the agent builds its platform client: its message holds the token, and its stack names a
  // file in a directory named after it.
  const hooks = join(dir.path, `crash-${token}`);
  await Deno.mkdir(hooks);
  const preload = join(hooks, "crash.ts");
  await Deno.writeTextFile(
    preload,
    `const real = Deno.createHttpClient;
Deno.createHttpClient = function crashWith(options) {
  // Only the platform client (it pins CAs), built after the identity was loaded.
  if (options?.caCerts?.length) {
    Promise.reject(new Error("cannot build the client for " + ${JSON.stringify(token)}));
  }
  return real(options);
};
`,
  );
  const flags = await agentPermissionFlags();
  const result = await runAgent(
    ["--state-dir", dir.path, "--log-level", "debug", "run", "--once"],
    { permissions: [...flags, "--preload", preload] },
  );
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /^error: internal error: cannot build the client for \[REDACTED\]/m);
  // The debug trace was printed (the stack's frame names the preloaded file), redacted.
  assert.match(result.stderr, /^Error: cannot build the client for \[REDACTED\]$/m);
  assert.match(result.stderr, /at .*crashWith .*crash-\[REDACTED\]\/crash\.ts/);
  assert.ok(!result.stderr.includes(token), `token leaked into crash output: ${result.stderr}`);
  assert.ok(!result.stdout.includes(token));
});
