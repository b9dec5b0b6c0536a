import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { IdentitySchema } from "../src/state/identity_store.ts";
import { keyMatchesCertificate } from "../src/trust/key_match.ts";
import {
  generateKeyPair,
  issueAgentCertificate,
  loadDevCa,
  parseCsr,
} from "../tasks/dev_platform/dev_ca.ts";
import { type DevPlatform, startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  type CliResult,
  enrollArgs,
  exists,
  runAgent,
  spawnAgent,
  tempDir,
} from "./_support/helpers.ts";
import { sha256Hex } from "../src/sha256.ts";

const posix = Deno.build.os !== "windows";

interface Env extends AsyncDisposable {
  platform: DevPlatform;
  dir: string;
  stateDir: string;
  identityPath: string;
  /** Writes a fresh (or given) token to a file and returns its path. */
  tokenFile(token?: string): Promise<string>;
  enroll(extra?: string[], options?: Parameters<typeof runAgent>[1]): Promise<CliResult>;
  agent(args: string[], options?: Parameters<typeof runAgent>[1]): Promise<CliResult>;
}

async function setup(): Promise<Env> {
  const platform = await startDevPlatform({ quiet: true });
  const dir = await tempDir("oneconnect-enroll-e2e-");
  const stateDir = join(dir.path, "state");
  const agent = (args: string[], options?: Parameters<typeof runAgent>[1]) =>
    runAgent(["--state-dir", stateDir, ...args], options);
  let n = 0;
  return {
    platform,
    dir: dir.path,
    stateDir,
    identityPath: join(stateDir, "identity.json"),
    async tokenFile(token = platform.mintEnrollmentToken()) {
      const path = join(dir.path, `token-${++n}`);
      await Deno.writeTextFile(path, `${token}\n`, { mode: 0o600 });
      return path;
    },
    agent,
    enroll: (extra = [], options) => agent(enrollArgs(platform, ...extra), options),
    async [Symbol.asyncDispose]() {
      try {
        assert.deepEqual(platform.contractViolations, []);
      } finally {
        await platform.close();
        await dir[Symbol.asyncDispose]();
      }
    },
  };
}

async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) names.push(entry.name);
  return names.sort();
}

function mode(path: string): number {
  return Deno.statSync(path).mode! & 0o777;
}

/** A TLS forwarder in front of the platform that keeps every request body the agent sends. */
function recordingForwarder(platform: DevPlatform) {
  const bodies: string[] = [];
  const client = Deno.createHttpClient({ caCerts: [platform.caCertPem] });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: platform.serverCertPem,
    key: platform.serverKeyPem,
    onListen: () => {},
  }, async (req) => {
    const body = await req.text();
    bodies.push(body);
    const upstream = await fetch(new URL(new URL(req.url).pathname.slice(1), platform.url), {
      method: req.method,
      headers: req.headers,
      body: req.method === "GET" ? undefined : body,
      client,
    });
    return new Response(await upstream.arrayBuffer(), {
      status: upstream.status,
      headers: upstream.headers,
    });
  });
  return {
    bodies,
    url: `https://127.0.0.1:${server.addr.port}/`,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      client.close();
    },
  };
}

Deno.test("enroll e2e: success stores 0700/0600 identity, deletes the token, keeps the key home", async () => {
  await using env = await setup();
  await using forwarder = recordingForwarder(env.platform);
  const token = env.platform.mintEnrollmentToken();
  const tokenFile = await env.tokenFile(token);
  const result = await env.agent([
    "enroll",
    "--url",
    forwarder.url,
    "--ca-file",
    env.platform.caFile,
    "--token-file",
    tokenFile,
  ]);
  assert.equal(result.code, 0, result.stderr);
  const [agent] = env.platform.agents();
  assert.ok(agent);
  assert.equal(result.stdout, `enrolled as ${agent.agent_id}\n`);
  assert.match(result.stderr, /INFO +Generating key/);
  assert.match(result.stderr, /INFO +Contacting platform/);
  assert.match(result.stderr, new RegExp(`INFO +Enrolled as "${agent.agent_id}"`));

  if (posix) {
    assert.equal(mode(env.stateDir), 0o700);
    assert.equal(mode(env.identityPath), 0o600);
  }
  // status.json holds the platform's `features` from the enrollment answer (contract v1.3).
  assert.deepEqual(await listDir(env.stateDir), ["identity.json", "status.json"]);
  if (posix) assert.equal(mode(join(env.stateDir, "status.json")), 0o600);
  assert.equal(await exists(tokenFile), false, "used token file deleted");

  const identity = IdentitySchema.parse(JSON.parse(await Deno.readTextFile(env.identityPath)));
  assert.equal(identity.agent_id, agent.agent_id);
  assert.equal(await keyMatchesCertificate(identity.private_key, identity.certificate), "match");
  const cert = new x509.X509Certificate(identity.certificate);
  assert.equal(await sha256Hex(cert.publicKey.rawData), agent.certificate_public_key_sha256);
  assert.deepEqual(identity.ca_certificates, [env.platform.caCertPem]);
  assert.equal(identity.bootstrap_ca_certificates.length, 1);

  // The enrollment POST, then the proving GET health through the stored identity's client.
  assert.equal(forwarder.bodies.length, 2);
  assert.equal(forwarder.bodies[1], "");
  const sent = JSON.parse(forwarder.bodies[0]!);
  assert.deepEqual(Object.keys(sent).sort(), ["agent_version", "csr", "enrollment_token", "host"]);
  assert.equal(sent.enrollment_token, token);
  const keyBody = identity.private_key.split("\n").slice(1, -2).join("");
  assert.ok(!forwarder.bodies[0]!.includes("PRIVATE KEY"));
  assert.ok(!forwarder.bodies[0]!.replace(/\\n/g, "").includes(keyBody.slice(0, 40)));

  for (const secret of [token, identity.service_account_token, keyBody.slice(0, 40)]) {
    assert.ok(!result.stderr.includes(secret) && !result.stdout.includes(secret));
  }

  const unenroll = await env.agent(["unenroll", "--yes", "--local-only"]);
  assert.equal(unenroll.code, 0, unenroll.stderr);
  assert.match(unenroll.stdout, /removed .*identity\.json\n/);
  assert.match(unenroll.stdout, new RegExp(`unenrolled ${agent.agent_id}\\n$`));
  assert.equal(await exists(env.identityPath), false);
});

Deno.test("enroll e2e: token from stdin and from the environment", async () => {
  await using env = await setup();
  const stdin = await env.enroll(["--token-file", "-"], {
    stdin: `${env.platform.mintEnrollmentToken()}\n`,
  });
  assert.equal(stdin.code, 0, stdin.stderr);
  assert.match(stdin.stdout, /^enrolled as [A-Za-z0-9._-]+\n$/);

  const viaEnv = await env.enroll(["--force"], {
    env: { ONECONNECT_ENROLLMENT_TOKEN: env.platform.mintEnrollmentToken() },
  });
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
  assert.equal(env.platform.agents().length, 2);
});

Deno.test("enroll e2e: unknown (401) and used (409) tokens exit 3 and write nothing", async () => {
  await using env = await setup();
  const unknown = await env.enroll(["--token-file", await env.tokenFile("not-a-real-token-123")]);
  assert.equal(unknown.code, 3, unknown.stderr);
  assert.match(
    unknown.stderr,
    /error: Cannot enroll: platform answered 401 enrollment_token_invalid: .*; ask for a new enrollment token/,
  );
  assert.equal(await exists(env.stateDir), false, "no state directory left behind");

  const token = env.platform.mintEnrollmentToken();
  await using other = await tempDir();
  const first = await runAgent([
    "--state-dir",
    other.path,
    ...enrollArgs(env.platform, "--token-file", "-"),
  ], { stdin: token });
  assert.equal(first.code, 0, first.stderr);
  const tokenFile = await env.tokenFile(token);
  const used = await env.enroll(["--token-file", tokenFile]);
  assert.equal(used.code, 3, used.stderr);
  assert.match(
    used.stderr,
    /platform answered 409 enrollment_token_consumed: .*new enrollment token/,
  );
  assert.equal(await exists(env.identityPath), false);
  assert.equal(await exists(tokenFile), true, "a token that did not enroll is not deleted");
  assert.ok(!used.stderr.includes(token));
});

Deno.test("enroll e2e: a certificate for another key or no agent_id is refused, nothing written", async () => {
  await using env = await setup();
  const caDir = dirname(env.platform.caFile);
  const ca = await loadDevCa(
    env.platform.caCertPem,
    await Deno.readTextFile(join(caDir, "ca.key")),
  );
  const { createCsr } = await import("../src/trust/certificates.ts");
  const foreign = await issueAgentCertificate(ca, {
    agentId: "agent-x",
    csr: await parseCsr(await createCsr(await generateKeyPair(), "elsewhere")),
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });
  const answer = {
    agent_id: "agent-x",
    certificate: foreign.toString("pem"),
    ca_certificates: [env.platform.caCertPem],
    service_account_token: "oc_sat_injected_0123456789",
  };
  const cases: Array<[Record<string, unknown>, number, RegExp]> = [
    [answer, 4, /certificate was issued for another key.*nothing was stored/],
    [{ ...answer, agent_id: undefined }, 4, /refusing the platform's answer: .*agent_id.*used up/],
  ];
  for (const [body, code, why] of cases) {
    env.platform.injectFault({
      route: "enroll",
      status: 201,
      body: JSON.stringify(body),
      contentType: "application/json",
      times: 1,
    });
    const tokenFile = await env.tokenFile();
    const result = await env.enroll(["--token-file", tokenFile]);
    assert.equal(result.code, code, result.stderr);
    assert.match(result.stderr, why);
    assert.equal(result.stdout, "");
    assert.ok(!result.stderr.includes("oc_sat_injected_0123456789"));
    assert.equal(await exists(env.identityPath), false);
    assert.equal(await exists(tokenFile), true);
  }
});

Deno.test("enroll e2e: already enrolled succeeds sending nothing; --force replaces; a failed --force keeps the old identity", async () => {
  await using env = await setup();
  const first = await env.enroll(["--token-file", await env.tokenFile()]);
  assert.equal(first.code, 0, first.stderr);
  const before = await Deno.readTextFile(env.identityPath);
  const requests = env.platform.requestCount;

  const again = await env.enroll(["--token-file", await env.tokenFile()]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, `already enrolled as ${JSON.parse(before).agent_id}\n`);
  assert.equal(env.platform.requestCount, requests, "nothing sent");

  const failed = await env.enroll([
    "--force",
    "--token-file",
    await env.tokenFile("bogus-token-123456"),
  ]);
  assert.equal(failed.code, 3, failed.stderr);
  assert.equal(await Deno.readTextFile(env.identityPath), before);
  const beat = await env.agent(["run", "--once"]);
  assert.equal(beat.code, 0, `old identity still works: ${beat.stderr}`);

  const forced = await env.enroll(["--force", "--token-file", await env.tokenFile()]);
  assert.equal(forced.code, 0, forced.stderr);
  const oldId = JSON.parse(before).agent_id;
  const newId = JSON.parse(await Deno.readTextFile(env.identityPath)).agent_id;
  assert.notEqual(newId, oldId);
  assert.equal(forced.stdout, `enrolled as ${newId}\n`);
  const beatNew = await env.agent(["run", "--once"]);
  assert.equal(beatNew.code, 0, beatNew.stderr);
  assert.equal(env.platform.heartbeats(newId).length, 1);
});

Deno.test("enroll e2e: http:// to a non-loopback host exits 2 without any connection", async () => {
  // Every connection the agent could make goes through this loopback proxy, so it counts them.
  let connections = 0;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      conn.close();
    }
  })();
  const proxy = `http://127.0.0.1:${listener.addr.port}`;
  await using dir = await tempDir();
  const tokenFile = join(dir.path, "token");
  await Deno.writeTextFile(tokenFile, "some-token-123456");
  try {
    const env = { HTTP_PROXY: proxy, HTTPS_PROXY: proxy };
    const args = ["--state-dir", join(dir.path, "state"), "enroll", "--token-file", tokenFile];
    const plain = await runAgent([...args, "--url", "http://platform.example.com/"], { env });
    assert.equal(plain.code, 2, plain.stderr);
    assert.match(
      plain.stderr,
      /Refusing plain http:\/\/ to non-loopback host "platform\.example\.com"/,
    );
    assert.equal(plain.stderr.trim().split("\n").length, 1);
    assert.equal(connections, 0);
    assert.equal(await exists(join(dir.path, "state", "identity.json")), false);

    // Control: the same run over https does reach the proxy, so the count above can fail.
    const tls = await runAgent([
      ...args,
      "--url",
      "https://platform.example.com/",
      "--timeout",
      "1",
    ], {
      env,
    });
    assert.notEqual(tls.code, 0);
    assert.ok(connections > 0, "the https control run did not reach the proxy");
  } finally {
    listener.close();
    await accepting.catch(() => {});
  }
});

Deno.test({
  name:
    "enroll e2e: loosened modes are repaired with a warning; corrupt identity exits 2 naming it",
  ignore: !posix,
  fn: async () => {
    await using env = await setup();
    const ok = await env.enroll(["--token-file", await env.tokenFile()]);
    assert.equal(ok.code, 0, ok.stderr);
    await Deno.chmod(env.stateDir, 0o755);
    await Deno.chmod(env.identityPath, 0o644);
    const again = await env.enroll(["--token-file", await env.tokenFile()]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^already enrolled as /);
    assert.match(
      again.stderr,
      new RegExp(`WARN +Tightened permissions of "${env.identityPath}" from 0644 to 0600`),
    );
    assert.match(
      again.stderr,
      new RegExp(`WARN +Tightened permissions of "${env.stateDir}" from 0755`),
    );
    assert.equal(mode(env.stateDir), 0o700);
    assert.equal(mode(env.identityPath), 0o600);

    const text = await Deno.readTextFile(env.identityPath);
    const truncated = text.slice(0, Math.floor(text.length / 2));
    await Deno.writeTextFile(env.identityPath, truncated);
    for (const args of [["enroll", "--url", env.platform.url.href], ["status"]]) {
      const result = await env.agent(args);
      assert.equal(result.code, 2, `${args[0]}: ${result.stderr}`);
      assert.ok(result.stderr.includes(JSON.stringify(env.identityPath)), result.stderr);
      assert.match(result.stderr, /Corrupt identity file/);
    }
    assert.equal(await Deno.readTextFile(env.identityPath), truncated, "never overwritten");
  },
});

Deno.test({
  name: "enroll e2e: kill -9 during a --force enroll leaves the previous complete identity",
  ignore: !posix,
  fn: async () => {
    await using env = await setup();
    const first = await env.enroll(["--token-file", await env.tokenFile()]);
    assert.equal(first.code, 0, first.stderr);
    const before = await Deno.readTextFile(env.identityPath);

    env.platform.injectFault({ route: "enroll", delayMs: 3000, times: 1 });
    const requests = env.platform.requestCount;
    const tokenFile = await env.tokenFile();
    const child = spawnAgent([
      "--state-dir",
      env.stateDir,
      ...enrollArgs(env.platform, "--force", "--token-file", tokenFile),
    ]);
    // Wait (bounded) until the request is in flight at the platform, then kill the agent.
    for (let i = 0; i < 200 && env.platform.requestCount === requests; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(env.platform.requestCount > requests, "enroll request never reached the platform");
    child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
    await child.stdout.cancel();
    await child.stderr.cancel();

    assert.equal(await Deno.readTextFile(env.identityPath), before);
    // The first enrollment's status.json (its `features`), and the killed process's lock file: the
    // next command recovers it (its OS lock is free). Nothing else of the killed enrollment.
    assert.deepEqual(await listDir(env.stateDir), [
      "identity.json",
      "identity.lock",
      "status.json",
    ]);
    assert.equal(await exists(tokenFile), true);
    const beat = await env.agent(["run", "--once"]);
    assert.equal(beat.code, 0, beat.stderr);
    assert.match(beat.stderr, /Taking over the stale lock .*identity\.lock/);
    assert.deepEqual(await listDir(env.stateDir), ["identity.json", "status.json"]);

    // Without --force a fresh state dir killed the same way holds no identity at all.
    env.platform.injectFault({ route: "enroll", delayMs: 3000, times: 1 });
    const fresh = join(env.dir, "fresh");
    const requests2 = env.platform.requestCount;
    const child2 = spawnAgent([
      "--state-dir",
      fresh,
      ...enrollArgs(env.platform, "--token-file", await env.tokenFile()),
    ]);
    for (let i = 0; i < 200 && env.platform.requestCount === requests2; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    child2.kill("SIGKILL");
    await child2.status;
    await child2.stdout.cancel();
    await child2.stderr.cancel();
    assert.deepEqual(await listDir(fresh), ["identity.lock"]);
    const status2 = await runAgent(["--state-dir", fresh, "status"]);
    assert.equal(status2.code, 5, status2.stderr);
  },
});
