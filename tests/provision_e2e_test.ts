import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { TelemetryCollector } from "../src/telemetry/collector.ts";
import { enrollAgent, errorLine, exists, runAgent, tempDir } from "./_support/helpers.ts";
import { opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

const posix = Deno.build.os !== "windows";
const HOST_MACHINE_ID = (await new TelemetryCollector().host()).machine_id;

/** The agent with `--state-dir <dir>/state --config-file <dir>/etc/agent.json`. */
function paths(dir: string) {
  const stateDir = join(dir, "state");
  const configFile = join(dir, "etc", "agent.json");
  return {
    stateDir,
    configFile,
    tokenFile: join(stateDir, "enrollment.token"),
    agent: (args: string[], env: Record<string, string> = {}) =>
      runAgent(["--state-dir", stateDir, "--config-file", configFile, ...args], { env }),
  };
}

function mode(path: string): number {
  return Deno.statSync(path).mode! & 0o777;
}

Deno.test("provision stores URL, CA and token for the service, never prints the token, keeps other keys", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  await Deno.mkdir(join(dir.path, "etc"), { mode: 0o755 });
  await Deno.writeTextFile(p.configFile, '{"log_level": "debug"}\n', { mode: 0o644 });
  const token = platform.mintEnrollmentToken();
  const result = await p.agent(["provision"], {
    ONECONNECT_PLATFORM_URL: platform.url.href,
    ONECONNECT_CA_FILE: platform.caFile,
    ONECONNECT_ENROLLMENT_TOKEN: token,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout.trim().split("\n"), [
    `platform URL ${JSON.stringify(platform.url.href)} stored in ${JSON.stringify(p.configFile)}`,
    `CA file ${JSON.stringify(platform.caFile)} stored in ${JSON.stringify(p.configFile)}`,
    `enrollment token stored in ${JSON.stringify(p.tokenFile)} (mode 0600)`,
  ]);
  assert.ok(!result.stdout.includes(token) && !result.stderr.includes(token));
  assert.deepEqual(JSON.parse(await Deno.readTextFile(p.configFile)), {
    log_level: "debug",
    platform_url: platform.url.href,
    ca_file: platform.caFile,
  });
  assert.equal(await Deno.readTextFile(p.tokenFile), `${token}\n`);
  if (posix) {
    assert.equal(mode(p.tokenFile), 0o600);
    assert.equal(mode(p.stateDir), 0o700);
    assert.equal(mode(p.configFile), 0o644);
  }

  // Pins replace the CA file (trust is one setting); nothing else changes.
  const pin = `sha256:${"ab".repeat(32)}`;
  const again = await p.agent(["provision"], {
    ONECONNECT_CA_PIN: pin.toUpperCase().replace("SHA256", "sha256"),
  });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, `1 CA pin(s) stored in ${JSON.stringify(p.configFile)}\n`);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(p.configFile)), {
    log_level: "debug",
    platform_url: platform.url.href,
    ca_pin: [pin],
  });

  const nothing = await p.agent(["provision"]);
  assert.equal(nothing.code, 0, nothing.stderr);
  assert.equal(nothing.stdout, "nothing to provision\n");
});

Deno.test("provision refuses a bad value with exit 2 naming the variable, and writes nothing", async () => {
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  const cases: [Record<string, string>, RegExp][] = [
    [
      { ONECONNECT_PLATFORM_URL: "http://platform.example" },
      /non-loopback host "platform\.example" \(ONECONNECT_PLATFORM_URL\)/,
    ],
    [
      { ONECONNECT_PLATFORM_URL: "not a url" },
      /Invalid platform URL "not a url" \(ONECONNECT_PLATFORM_URL\)/,
    ],
    [{ ONECONNECT_CA_PIN: "sha256:12" }, /Invalid CA pin "sha256:12" \(ONECONNECT_CA_PIN\)/],
    [
      { ONECONNECT_CA_FILE: join(dir.path, "missing.pem") },
      /Cannot read CA file .*missing\.pem.*\(ONECONNECT_CA_FILE\)/,
    ],
    [
      { ONECONNECT_CA_FILE: "/etc/hostname", ONECONNECT_CA_PIN: `sha256:${"a".repeat(64)}` },
      /set ONECONNECT_CA_FILE or ONECONNECT_CA_PIN, not both/,
    ],
  ];
  for (const [env, message] of cases) {
    const result = await p.agent(["provision"], {
      ...env,
      ONECONNECT_ENROLLMENT_TOKEN: "tok-must-not-be-stored",
    });
    assert.equal(result.code, 2, `${JSON.stringify(env)}: ${result.stderr}`);
    assert.match(errorLine(result), message);
    assert.equal(result.stdout, "");
    assert.ok(!result.stderr.includes("tok-must-not-be-stored"));
    assert.equal(await exists(p.configFile), false);
    assert.equal(await exists(p.tokenFile), false);
  }
});

Deno.test("run with neither identity nor token exits 5 saying what to provision", async () => {
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  const result = await p.agent(["run"]);
  assert.equal(result.code, 5, result.stderr);
  assert.equal(
    errorLine(result),
    `error: Not enrolled: provide an enrollment token in ${
      JSON.stringify(p.tokenFile)
    } (or ONECONNECT_ENROLLMENT_TOKEN) and the platform URL and CA ("platform_url", "ca_file" or "ca_pin") in ${
      JSON.stringify(p.configFile)
    }, or run "oneconnect-agent enroll"`,
  );
  assert.equal(result.stdout, "");
});

Deno.test("golden image: nothing happens until a token is provisioned, then run enrolls and heartbeats", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  // Installed into the image: URL and trust, no token.
  const install = await p.agent(["provision"], {
    ONECONNECT_PLATFORM_URL: platform.url.href,
    ONECONNECT_CA_FILE: platform.caFile,
  });
  assert.equal(install.code, 0, install.stderr);
  const idle = await p.agent(["run", "--once"]);
  assert.equal(idle.code, 5, idle.stderr);
  assert.equal(platform.requestCount, 0);
  assert.equal(platform.agents().length, 0);

  // First boot of a copy: the token appears.
  const token = platform.mintEnrollmentToken();
  const first = await p.agent(["provision"], { ONECONNECT_ENROLLMENT_TOKEN: token });
  assert.equal(first.code, 0, first.stderr);
  const run = await p.agent(["--log-format", "json", "run", "--once"]);
  assert.equal(run.code, 0, run.stderr);
  assert.ok(!run.stderr.includes(token));
  const [agent] = platform.agents();
  assert.ok(agent);
  assert.equal(platform.heartbeats(agent.agent_id).length, 1);
  assert.equal(await exists(p.tokenFile), false, "the used token is deleted");
  const identity = JSON.parse(await Deno.readTextFile(join(p.stateDir, "identity.json")));
  assert.equal(identity.agent_id, agent.agent_id);

  // A later start is a steady run: same agent, no enrollment.
  const later = await p.agent(["run", "--once"]);
  assert.equal(later.code, 0, later.stderr);
  assert.equal(platform.agents().length, 1);
  assert.equal(platform.heartbeats(agent.agent_id).length, 2);
});

Deno.test("run with a provisioned token reports a failed enrollment exactly as enroll does", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  const token = platform.mintEnrollmentToken();
  // Spend it elsewhere first: the platform answers 409 enrollment_token_consumed.
  await using other = await tempDir("oneconnect-provision-other-");
  const spent = await runAgent(
    ["--state-dir", other.path, "enroll", "--url", platform.url.href, "--ca-file", platform.caFile],
    { env: { ONECONNECT_ENROLLMENT_TOKEN: token } },
  );
  assert.equal(spent.code, 0, spent.stderr);
  const env = {
    ONECONNECT_PLATFORM_URL: platform.url.href,
    ONECONNECT_CA_FILE: platform.caFile,
    ONECONNECT_ENROLLMENT_TOKEN: token,
  };
  const enroll = await p.agent(["enroll"], env);
  const run = await p.agent(["run"], env);
  assert.equal(enroll.code, 3, enroll.stderr);
  assert.equal(run.code, enroll.code, run.stderr);
  assert.equal(errorLine(run), errorLine(enroll));
  assert.ok(!run.stderr.includes(token));
  assert.equal(await exists(join(p.stateDir, "identity.json")), false);
});

Deno.test({
  name:
    "a clone with a provisioned token enrolls as a new agent and discards the copied credential",
  ignore: HOST_MACHINE_ID === null,
}, async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  const original = await enrollAgent(platform, p.stateDir);
  const identityPath = join(p.stateDir, "identity.json");
  const copied = JSON.parse(await Deno.readTextFile(identityPath));
  copied.machine_id = "ffffffffffffffffffffffffffffffff";
  await Deno.writeTextFile(identityPath, JSON.stringify(copied, null, 2), { mode: 0o600 });

  // Without a token, today's clone guard stands.
  const guarded = await p.agent(["run", "--once"]);
  assert.equal(guarded.code, 3, guarded.stderr);
  assert.match(errorLine(guarded), /enrolled on another host \(cloned image\?\)/);
  assert.equal(platform.heartbeats().length, 0);

  const token = platform.mintEnrollmentToken();
  await Deno.writeTextFile(p.tokenFile, `${token}\n`, { mode: 0o600 });
  const run = await p.agent(["--config-file", p.configFile, "run", "--once"], {
    ONECONNECT_PLATFORM_URL: platform.url.href,
    ONECONNECT_CA_FILE: platform.caFile,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /discarding it and enrolling this host/);
  const fresh = JSON.parse(await Deno.readTextFile(identityPath));
  assert.notEqual(fresh.agent_id, original);
  assert.equal(fresh.machine_id, HOST_MACHINE_ID);
  assert.notEqual(fresh.private_key, copied.private_key);
  assert.notEqual(fresh.service_account_token, copied.service_account_token);
  assert.equal(platform.agents().length, 2);
  assert.equal(platform.heartbeats(fresh.agent_id).length, 1);
  assert.equal(platform.heartbeats(original).length, 0);
  assert.equal(await exists(p.tokenFile), false);
  // No copy of the other host's key or bearer is left in the state directory.
  for await (const entry of Deno.readDir(p.stateDir)) {
    if (!entry.isFile) continue;
    const text = await Deno.readTextFile(join(p.stateDir, entry.name));
    assert.ok(!text.includes(copied.service_account_token), entry.name);
    assert.ok(!text.includes(copied.private_key.split("\n")[1]), entry.name);
  }
});

Deno.test({
  name: "a CA pin provisioned into the system agent.json is what the service's enrollment trusts",
  ignore: !opensslAvailable(),
}, async () => {
  // An openssl-made root -> issuing CA -> server chain in front of the dev platform.
  const pki = await sharedOpensslPki();
  await using platform = await startDevPlatform({
    quiet: true,
    serverCertificate: { certPem: pki.serverChain.certPem, keyPem: pki.serverChain.keyPem },
  });
  await using dir = await tempDir("oneconnect-provision-e2e-");
  const p = paths(dir.path);
  const pins = await runAgent(["ca-pin", join(pki.dir, "issuing.crt")]);
  assert.equal(pins.code, 0, pins.stderr);
  const pin = pins.stdout.split(/\s+/)[0]!;
  const rootPin = (await runAgent(["ca-pin", join(pki.dir, "root.crt")])).stdout.split(/\s+/)[0]!;
  const provisioned = await p.agent(["provision"], {
    ONECONNECT_PLATFORM_URL: platform.url.href,
    ONECONNECT_CA_PIN: rootPin,
    ONECONNECT_ENROLLMENT_TOKEN: platform.mintEnrollmentToken(),
  });
  assert.equal(provisioned.code, 0, provisioned.stderr);
  // The root is not presented, so nothing matches: nothing is sent, the token is kept.
  const refused = await p.agent(["run", "--once"]);
  assert.equal(refused.code, 4, refused.stderr);
  assert.match(errorLine(refused), /no CA certificate presented by .* matches --ca-pin/);
  assert.equal(platform.agents().length, 0);
  assert.equal(await exists(p.tokenFile), true);

  const fixed = await p.agent(["provision"], { ONECONNECT_CA_PIN: pin });
  assert.equal(fixed.code, 0, fixed.stderr);
  const run = await p.agent(["run", "--once"]);
  assert.equal(run.code, 0, run.stderr);
  const identity = JSON.parse(await Deno.readTextFile(join(p.stateDir, "identity.json")));
  assert.deepEqual(identity.trust, { source: "ca_pin", ca_pins: [pin] });
  assert.deepEqual(identity.bootstrap_ca_certificates, [pki.issuing.certPem]);
  assert.equal(platform.heartbeats(identity.agent_id).length, 1);
  assert.equal(await exists(p.tokenFile), false);
});
