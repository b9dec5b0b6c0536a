/**
 * End to end: no input Deno reads to build TLS trust (environment variables, preloaded code,
 * key logging) widens an enrolled agent's pinned CA set. Each case points the agent at a server
 * whose certificate chains to an impostor CA (made by openssl) passed through that input: no
 * request may reach the impostor, the bearer is never sent, and the exit code and line say why.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { runAgent, skipWithout, tempDir } from "./_support/helpers.ts";
import { opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

const noOpenssl = !opensslAvailable();

interface Impostor extends AsyncDisposable {
  url: string;
  caFile: string;
  caPem: string;
  requests: Array<{ path: string; authorization: string | null }>;
  dir: string;
}

/** An HTTPS server on loopback whose certificate chains to an openssl-made (impostor) root CA. */
async function startImpostor(dir: string): Promise<Impostor> {
  const pki = await sharedOpensslPki();
  const ca = { certFile: pki.rootFile, certPem: pki.root.certPem };
  const leaf = pki.serverChain;
  const requests: Impostor["requests"] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: leaf.certPem,
    key: leaf.keyPem,
    onListen: () => {},
    onError: () => new Response("error", { status: 500 }),
  }, (req) => {
    requests.push({
      path: new URL(req.url).pathname,
      authorization: req.headers.get("authorization"),
    });
    return Response.json({ heartbeat_interval_seconds: 60 });
  });
  return {
    url: `https://127.0.0.1:${server.addr.port}/`,
    caFile: ca.certFile,
    caPem: ca.certPem,
    requests,
    dir,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** A state directory holding an identity pinned to an unrelated dev CA, aimed at `url`. */
async function enrolledState(dir: string, url: string): Promise<string> {
  const stateDir = join(dir, "state");
  await Deno.mkdir(stateDir, { mode: 0o700 });
  const identity = await makeIdentity(await createDevCa(), { platformUrl: url });
  await Deno.writeTextFile(join(stateDir, "identity.json"), JSON.stringify(identity), {
    mode: 0o600,
  });
  return stateDir;
}

function runOnce(stateDir: string, env: Record<string, string>, denoFlags: string[] = []) {
  return runAgent(["--state-dir", stateDir, "run", "--once"], { env, denoFlags });
}

function assertRefusedByPin(
  result: { code: number; stderr: string },
  impostor: Impostor,
): void {
  assert.equal(result.code, 4, result.stderr);
  assert.match(
    result.stderr,
    /^error: Cannot send heartbeat: TLS handshake with "127\.0\.0\.1:\d+" failed: certificate issued by "Test Issuing CA" .*, but the trusted CA bundle holds "OneConnect Dev CA", not "Test Issuing CA"/m,
  );
  assert.deepEqual(impostor.requests, [], "a request reached the impostor");
}

const viaEnv: Array<[string, (i: Impostor) => Promise<Record<string, string>>]> = [
  ["DENO_CERT (a file)", (i) => Promise.resolve({ DENO_CERT: i.caFile })],
  ["DENO_CERT (base64: data)", (i) =>
    Promise.resolve({
      DENO_CERT: `base64:${btoa(i.caPem)}`,
    })],
  ["NODE_EXTRA_CA_CERTS", (i) => Promise.resolve({ NODE_EXTRA_CA_CERTS: i.caFile })],
  ["DENO_TLS_CA_STORE=system with SSL_CERT_FILE", (i) =>
    Promise.resolve({
      DENO_TLS_CA_STORE: "system",
      SSL_CERT_FILE: i.caFile,
    })],
  ["DENO_TLS_CA_STORE=mozilla,system with SSL_CERT_DIR", async (i) => {
    const certDir = join(i.dir, "certdir");
    await Deno.mkdir(certDir);
    await Deno.copyFile(i.caFile, join(certDir, "impostor.pem"));
    return { DENO_TLS_CA_STORE: "mozilla,system", SSL_CERT_DIR: certDir };
  }],
];

for (const [input, envFor] of viaEnv) {
  Deno.test({
    name: `an impostor CA in ${input} is not trusted by an enrolled agent`,
    ignore: skipWithout(!noOpenssl),
    async fn() {
      await using dir = await tempDir();
      await using impostor = await startImpostor(dir.path);
      const stateDir = await enrolledState(dir.path, impostor.url);
      assertRefusedByPin(await runOnce(stateDir, await envFor(impostor)), impostor);
    },
  });
}

Deno.test({
  name:
    "trust built before the agent started (DENO_CERT read by preloaded code) stops run with exit 2",
  ignore: skipWithout(!noOpenssl),
  async fn() {
    await using dir = await tempDir();
    await using impostor = await startImpostor(dir.path);
    const stateDir = await enrolledState(dir.path, impostor.url);
    const preload = new URL("./fixtures/early_tls_client.ts", import.meta.url).pathname;
    const result = await runOnce(stateDir, { DENO_CERT: impostor.caFile }, [
      `--preload=${preload}`,
    ]);
    assert.equal(result.code, 2, result.stderr);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0]!,
      /^error: Cannot guarantee that only the pinned CAs are trusted: Deno built its root certificate store before the agent started, with DENO_CERT set \(or was given --cert\); unset DENO_CERT in the agent's environment, .*/,
    );
    assert.deepEqual(impostor.requests, []);
  },
});

Deno.test({
  name: "SSLKEYLOGFILE (TLS secrets written to a file) stops run with exit 2 before any request",
  ignore: skipWithout(!noOpenssl),
  async fn() {
    await using dir = await tempDir();
    await using impostor = await startImpostor(dir.path);
    const stateDir = await enrolledState(dir.path, impostor.url);
    const keylog = join(dir.path, "keys.log");
    const result = await runOnce(stateDir, { SSLKEYLOGFILE: keylog });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^error: .*SSLKEYLOGFILE.*unset it/m);
    assert.deepEqual(impostor.requests, []);
    assert.equal(await Deno.stat(keylog).then((s) => s.size, () => 0), 0);
  },
});

Deno.test({
  name: "an impostor CA passed with deno's --cert flag stops run with exit 2",
  ignore: skipWithout(!noOpenssl),
  async fn() {
    await using dir = await tempDir();
    await using impostor = await startImpostor(dir.path);
    const stateDir = await enrolledState(dir.path, impostor.url);
    const result = await runOnce(stateDir, {}, [`--cert=${impostor.caFile}`]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      /^error: Cannot guarantee that only the pinned CAs are trusted: .*--cert/m,
    );
    assert.deepEqual(impostor.requests, []);
  },
});

Deno.test("the agent's launch flags never widen TLS trust (no --cert, no certificate errors ignored)", async () => {
  for (const flag of await agentPermissionFlags()) {
    assert.doesNotMatch(flag, /^--(cert|unsafely-ignore-certificate-errors)\b/);
  }
});
