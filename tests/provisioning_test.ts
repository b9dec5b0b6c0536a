import assert from "node:assert/strict";
import { join } from "node:path";
import { provision } from "../src/enrollment/provisioning.ts";
import { UsageError } from "../src/errors.ts";
import { denoFileSystem } from "../src/file_system.ts";
import { readSystemConfigText } from "../src/config/system_config.ts";
import { denoOwnershipHost } from "../src/state/ownership.ts";
import { testContext } from "./_support/context_fixture.ts";
import { exists, findTool, rejectsWith, skipWithout, tempDir } from "./_support/helpers.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { IdentityStore } from "../src/state/identity_store.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PATH_UNIT = join(ROOT, "packaging/systemd/oneconnect-agent-enroll.path");
const SERVICE_UNIT = join(ROOT, "packaging/systemd/oneconnect-agent.service");
const SYSTEMD_ANALYZE = findTool("systemd-analyze");
const TOKEN = "tok-0123456789abcdef";

/** `provision` in a temp dir: state in `<dir>/state`, configuration in `<dir>/etc/agent.json`. */
async function provisionIn(dir: string, env: Record<string, string>, machineId = "m-1") {
  const { ctx, out } = testContext(join(dir, "state"), { env });
  const lines = await provision(ctx, join(dir, "etc", "agent.json"), {
    fs: denoFileSystem,
    machineId: () => Promise.resolve(machineId),
  });
  assert.deepEqual(out, []);
  return lines;
}

Deno.test("provision validates every value before writing anything", async () => {
  await using dir = await tempDir();
  const err = await rejectsWith(
    provisionIn(dir.path, {
      ONECONNECT_PLATFORM_URL: "https://ok.example",
      ONECONNECT_ENROLLMENT_TOKEN: TOKEN,
      ONECONNECT_CA_PIN: "sha256:zz",
    }),
    UsageError,
  );
  assert.match(err.message, /Invalid CA pin "sha256:zz" \(ONECONNECT_CA_PIN\)/);
  assert.ok(!err.message.includes(TOKEN));
  assert.equal(await exists(join(dir.path, "etc")), false);
  assert.equal(await exists(join(dir.path, "state")), false);
});

Deno.test("provision keeps the token of an enrolled host out of its state, but stores it for a clone", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(join(dir.path, "state"));
  const identity = { ...await makeIdentity(await createDevCa()), machine_id: "m-1" };
  await store.save(identity);
  const tokenPath = join(dir.path, "state", "enrollment.token");
  assert.deepEqual(await provisionIn(dir.path, { ONECONNECT_ENROLLMENT_TOKEN: TOKEN }), [
    `enrollment token not stored: already enrolled as ${
      JSON.stringify(identity.agent_id)
    } (re-enroll with "oneconnect-agent enroll --force")`,
  ]);
  assert.equal(await exists(tokenPath), false);
  // The same state on a host with another machine id: a copy, which `run` re-enrolls.
  assert.deepEqual(await provisionIn(dir.path, { ONECONNECT_ENROLLMENT_TOKEN: TOKEN }, "m-2"), [
    `enrollment token stored in ${JSON.stringify(tokenPath)} (mode 0600)`,
  ]);
  assert.equal(await Deno.readTextFile(tokenPath), `${TOKEN}\n`);
});

Deno.test({
  name: "provision replaces a symlink planted at the token's place instead of writing through it",
  ignore: Deno.build.os === "windows",
}, async () => {
  await using dir = await tempDir();
  const state = join(dir.path, "state");
  await Deno.mkdir(state, { mode: 0o700 });
  const victim = join(dir.path, "victim");
  await Deno.writeTextFile(victim, "precious\n");
  await Deno.symlink(victim, join(state, "enrollment.token"));
  await provisionIn(dir.path, { ONECONNECT_ENROLLMENT_TOKEN: TOKEN });
  assert.equal(await Deno.readTextFile(victim), "precious\n");
  const info = await Deno.lstat(join(state, "enrollment.token"));
  assert.ok(info.isFile && !info.isSymlink);
  assert.equal(info.mode! & 0o777, 0o600);
});

Deno.test("provision refuses to merge into an unsafe or corrupt configuration file", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(join(dir.path, "etc"), { mode: 0o755 });
  const config = join(dir.path, "etc", "agent.json");
  await Deno.writeTextFile(config, "{not json");
  await Deno.chmod(config, 0o644);
  const corrupt = await rejectsWith(
    provisionIn(dir.path, { ONECONNECT_PLATFORM_URL: "https://ok.example" }),
    UsageError,
  );
  assert.match(corrupt.message, /Invalid configuration .*agent\.json.*not valid JSON/);
  if (Deno.build.os !== "windows") {
    await Deno.writeTextFile(config, "{}");
    await Deno.chmod(config, 0o666);
    const open = await rejectsWith(
      provisionIn(dir.path, { ONECONNECT_PLATFORM_URL: "https://ok.example" }),
      UsageError,
    );
    assert.match(open.message, /writable by group or others/);
    assert.equal(await Deno.readTextFile(config), "{}");
  }
});

Deno.test({
  name: "the system configuration is read without following a symbolic link, size capped",
  ignore: Deno.build.os === "windows",
}, async () => {
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o755);
  const real = join(dir.path, "real.json");
  await Deno.writeTextFile(real, '{"a": 1}');
  await Deno.chmod(real, 0o644);
  await Deno.symlink(real, join(dir.path, "link.json"));
  const read = (path: string) => readSystemConfigText(path, denoOwnershipHost, Deno.build.os);
  assert.equal(await read(real), '{"a": 1}');
  assert.equal(await read(join(dir.path, "missing")), undefined);
  const err = await rejectsWith(read(join(dir.path, "link.json")), UsageError);
  assert.match(err.message, /symbolic link/);
  await Deno.writeTextFile(real, "x".repeat(300 * 1024));
  const big = await rejectsWith(read(real), UsageError);
  assert.match(big.message, /larger than/);
});

Deno.test("the enroll path unit starts the service when a token is written to its place", async () => {
  const text = await Deno.readTextFile(PATH_UNIT);
  const keys = text.split("\n").filter((l) => /^[A-Za-z]+=/.test(l));
  assert.deepEqual(keys, [
    "Description=Start the OneConnect agent when an enrollment token is provisioned",
    "Documentation=https://github.com/oneconnect/oneconnect-agent/blob/main/docs/provisioning.md",
    "PathChanged=/var/lib/oneconnect-agent/enrollment.token",
    "Unit=oneconnect-agent.service",
    "WantedBy=multi-user.target",
  ]);
  // The token's place is where the service's state directory keeps it.
  const service = await Deno.readTextFile(SERVICE_UNIT);
  assert.match(service, /^Environment=ONECONNECT_STATE_DIR=\/var\/lib\/oneconnect-agent$/m);
  // PathExists would restart a service that exits 2 or 3 with the token still there, forever.
  assert.match(service, /^StartLimitIntervalSec=0$/m);
  assert.doesNotMatch(text, /^PathExists=/m);
});

Deno.test({
  name: "systemd-analyze verify accepts the enroll path unit and reports a typo",
  ignore: skipWithout(SYSTEMD_ANALYZE !== null),
}, async () => {
  await using tmp = await tempDir();
  // verify loads the triggered service too, and insists that its ExecStart binary exists.
  const service = (await Deno.readTextFile(SERVICE_UNIT)).replace(
    /^ExecStart=\S+ run$/m,
    `ExecStart=${Deno.execPath()} run`,
  );
  await Deno.writeTextFile(join(tmp.path, "oneconnect-agent.service"), service);
  const verify = async (text: string) => {
    const path = join(tmp.path, "oneconnect-agent-enroll.path");
    await Deno.writeTextFile(path, text);
    const out = await new Deno.Command(SYSTEMD_ANALYZE!, { args: ["verify", path] }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
  };
  const text = await Deno.readTextFile(PATH_UNIT);
  assert.deepEqual(await verify(text), { code: 0, stderr: "" });
  const typo = await verify(text.replace("PathChanged=", "PathChangd="));
  assert.match(typo.stderr, /Unknown key 'PathChangd' in section \[Path\]/);
});
