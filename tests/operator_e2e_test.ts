/**
 * Issue 31: the usual operator mistakes, each answered with the exact message and exit code that
 * leads to the fix (the real CLI spawned, as an operator would run it).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import denoJson from "../deno.json" with { type: "json" };
import { errorLine, runAgent, spawnAgent, tempDir, until } from "./_support/helpers.ts";
import { nobodyDeno, runAgentAsNobody, UNPRIVILEGED_SKIP } from "./_support/unprivileged.ts";

const TOKEN_FLAG =
  "the enrollment token is never taken on the command line (ps and shell history would show it); use --token-file <path>, --token-file - to read it from standard input, or the environment variable ONECONNECT_ENROLLMENT_TOKEN";
const RUN_AS_ROOT =
  "run as root (e.g. with sudo), or pass --state-dir with a directory this user owns";

Deno.test("cli suggests the nearest command for a typo (enrol)", async () => {
  const r = await runAgent(["enrol", "--url", "https://platform.example.com"]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.equal(
    r.stderr,
    "error: Unknown command 'enrol'; did you mean 'enroll'? (see --help)\n",
  );
});

Deno.test("cli suggests the nearest flag for a typo (--onse)", async () => {
  const r = await runAgent(["run", "--onse"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "error: Unknown option '--onse'; did you mean '--once'? (see --help)\n");
});

Deno.test("cli version command prints what --version prints", async () => {
  const r = await runAgent(["version"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, `oneconnect-agent ${denoJson.version}\n`);
  assert.equal(r.stderr, "");
});

Deno.test("cli --token points to --token-file, stdin and the environment without echoing the value", async () => {
  for (const args of [["--token", "s3cr3t-value"], ["--token=s3cr3t-value"]]) {
    const r = await runAgent(["enroll", "--url", "https://platform.example.com", ...args]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `error: Unknown option '--token'; ${TOKEN_FLAG} (see --help)\n`);
    assert.ok(!r.stderr.includes("s3cr3t"), "the token value is echoed");
  }
});

Deno.test("cli reports a JSON syntax error in agent.json with its line and column", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "agent.json");
  await Deno.writeTextFile(path, '{\n  "log_level": "debug",\n}\n', { mode: 0o600 });
  const r = await runAgent(["--state-dir", dir.path, "status"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `error: Invalid configuration ${
      JSON.stringify(path)
    }: not valid JSON (line 3 column 1: expected double-quoted property name); fix or remove the file\n`,
  );
});

Deno.test("cli names the nearest known key for an unknown agent.json key, never its value", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "agent.json");
  await Deno.writeTextFile(
    path,
    JSON.stringify({ proxy_ulr: "http://alice:hunter22@proxy:3128" }),
    { mode: 0o600 },
  );
  const r = await runAgent(["--state-dir", dir.path, "status"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `error: Invalid configuration ${
      JSON.stringify(path)
    }: unknown field "proxy_ulr" (did you mean "proxy_url"?)\n`,
  );
});

/**
 * A temp tree nobody can traverse, `home` (nobody's) and `system` (root's, 0700, standing in for
 * /var/lib/oneconnect-agent), and `run` of the CLI as nobody with that home and system directory.
 */
async function unprivileged() {
  const deno = await nobodyDeno();
  const dir = await tempDir("oneconnect-sudo-");
  await Deno.chmod(dir.path, 0o755);
  const home = join(dir.path, "home");
  await Deno.mkdir(home);
  await Deno.chown(home, 65534, 65534);
  const system = join(dir.path, "system");
  await Deno.mkdir(system, { mode: 0o700 });
  await Deno.chmod(system, 0o700);
  return {
    home,
    system,
    userState: join(home, ".local", "state", "oneconnect-agent"),
    run: (args: string[], env: Record<string, string> = {}) =>
      runAgentAsNobody(deno.deno, args, {
        HOME: home,
        ONECONNECT_SYSTEM_STATE_DIR: system,
        ...env,
      }),
    async [Symbol.asyncDispose]() {
      await dir[Symbol.asyncDispose]();
      await deno[Symbol.asyncDispose]();
    },
  };
}

const NOBODY_TEST = { ignore: UNPRIVILEGED_SKIP !== undefined };

Deno.test(
  "status and unenroll as a user while root is enrolled say run as root, never enroll",
  NOBODY_TEST,
  async () => {
    await using t = await unprivileged();
    // Readable: the identity is seen, as on a system whose state directory allows listing.
    await Deno.chmod(t.system, 0o755);
    await Deno.writeTextFile(join(t.system, "identity.json"), "{}", { mode: 0o600 });
    for (const [command, ...args] of [["status"], ["unenroll", "--yes"]]) {
      const r = await t.run([command!, ...args]);
      assert.equal(r.code, 5);
      assert.equal(
        r.stderr,
        `error: Not enrolled as this user (no identity in ${
          JSON.stringify(t.userState)
        }), but the system state directory ${
          JSON.stringify(t.system)
        } holds one: run as root instead (sudo oneconnect-agent ${command}); enrolling as this user would register this host a second time\n`,
      );
      assert.equal(r.stdout, "");
    }
  },
);

Deno.test(
  "run as a user when root's state directory cannot be read says run as root",
  NOBODY_TEST,
  async () => {
    await using t = await unprivileged();
    const r = await t.run(["run", "--once"]);
    assert.equal(r.code, 5);
    assert.equal(
      r.stderr,
      `error: Not enrolled as this user (no identity in ${
        JSON.stringify(t.userState)
      }), and the system state directory ${
        JSON.stringify(t.system)
      } exists but this user (uid 65534) cannot read it: run as root instead (sudo oneconnect-agent run); enrolling as this user would register this host a second time\n`,
    );
  },
);

Deno.test(
  "status as a user still advises enrolling when no system state directory exists",
  NOBODY_TEST,
  async () => {
    await using t = await unprivileged();
    await Deno.remove(t.system);
    const r = await t.run(["status"]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /^error: Not enrolled: no identity in .*; run "oneconnect-agent enroll/);
  },
);

Deno.test(
  "a root-only state directory: a missing agent.json is not reported as unreadable, and run as root is said",
  NOBODY_TEST,
  async () => {
    await using t = await unprivileged();
    const r = await t.run(["--state-dir", t.system, "status"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `error: Cannot read configuration ${
        JSON.stringify(join(t.system, "agent.json"))
      }: permission denied (this user cannot look inside ${
        JSON.stringify(t.system)
      }, so whether it exists is unknown); ${RUN_AS_ROOT}\n`,
    );
  },
);

Deno.test(
  "enroll into a state directory the user cannot create says run as root",
  NOBODY_TEST,
  async () => {
    await using t = await unprivileged();
    await Deno.chmod(t.system, 0o755);
    const state = join(t.system, "agent");
    const r = await t.run(["--state-dir", state, "enroll", "--url", "http://127.0.0.1:9"], {
      ONECONNECT_ENROLLMENT_TOKEN: "tok-abcdef-123456",
    });
    assert.equal(r.code, 2);
    assert.equal(
      errorLine(r),
      `error: Cannot create state directory ${
        JSON.stringify(state)
      }: permission denied; ${RUN_AS_ROOT}`,
    );
  },
);

/** A platform that takes the enrollment request and never answers it. */
function silentPlatform() {
  let received = 0;
  const hold = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    if (req.method === "POST") {
      received++;
      await req.arrayBuffer();
      await hold.promise;
    }
    return new Response("gone", { status: 503 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    received: () => received,
    async [Symbol.asyncDispose]() {
      hold.resolve();
      await server.shutdown();
    },
  };
}

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`enroll stopped by ${signal} after sending the token exits ${code} saying it may be spent`, async () => {
    await using platform = silentPlatform();
    await using dir = await tempDir();
    const child = spawnAgent(
      ["--state-dir", join(dir.path, "state"), "enroll", "--url", platform.url],
      { env: { ONECONNECT_ENROLLMENT_TOKEN: "tok-abcdef-123456" } },
    );
    const output = child.output();
    await until(() => platform.received() > 0, "the enrollment request");
    child.kill(signal);
    const out = await output;
    assert.equal(out.code, code);
    assert.equal(
      new TextDecoder().decode(out.stderr).split("\n").filter((l) => l.startsWith("error:"))[0],
      "error: Cannot enroll: interrupted; nothing was stored, but the enrollment token may already be spent (it was sent); if a retry is answered 409 enrollment_token_consumed, ask for a new token",
    );
    assert.equal(new TextDecoder().decode(out.stdout), "");
  });
}
