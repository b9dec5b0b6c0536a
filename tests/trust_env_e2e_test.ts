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
import { childEnv, repoPath, runAgent, skipWithout, tempDir } from "./_support/helpers.ts";
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

/**
 * A state directory holding an identity aimed at `url` whose platform CA is an unrelated dev CA:
 * pinned to it (`ca_file`), or trusting the OS store besides (`system`, as after an enrollment
 * without --ca-file or --ca-pin).
 */
async function enrolledState(
  dir: string,
  url: string,
  trust: "ca_file" | "system" = "ca_file",
): Promise<string> {
  const stateDir = join(dir, "state");
  await Deno.mkdir(stateDir, { mode: 0o700 });
  const identity = await makeIdentity(await createDevCa(), { platformUrl: url });
  if (trust === "system") {
    identity.bootstrap_ca_certificates = [];
    identity.trust = { source: "system" };
  }
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

/** Whether a plain Deno process (not the agent) with `env` (default: the OS store) trusts the impostor. */
async function trustedByPlainDeno(impostor: Impostor, env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `await (await fetch(${JSON.stringify(impostor.url)})).body?.cancel()`],
    env: childEnv({ DENO_TLS_CA_STORE: "system", ...env }),
    clearEnv: true,
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

/**
 * Proves a case can fail: a plain Deno process given the same environment trusts the impostor.
 * Except through SSL_CERT_DIR, which Deno 2.9.6 never reads (its OS store reads SSL_CERT_FILE
 * only); the agent clears it for a Deno that will, and this notices when that Deno arrives.
 */
async function assertCaseLive(impostor: Impostor, env: Record<string, string>): Promise<void> {
  const trusted = await trustedByPlainDeno(impostor, env);
  impostor.requests.length = 0;
  const names = Object.keys(env).join(" and ");
  if ("SSL_CERT_DIR" in env) {
    assert.equal(
      trusted,
      false,
      "Deno now reads SSL_CERT_DIR: update docs/networks.md and trust_store.ts",
    );
  } else {
    assert.ok(
      trusted,
      `a plain Deno does not trust the impostor with ${names}: the case cannot fail`,
    );
  }
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
      const env = await envFor(impostor);
      await assertCaseLive(impostor, env);
      assertRefusedByPin(await runOnce(stateDir, env), impostor);
    },
  });
}

// An identity that trusts the OS store makes the agent select Deno's `system` store, which on Linux
// reads SSL_CERT_FILE: only clearing it keeps an impostor named there out. The other variables add
// to any store. DENO_TLS_CA_STORE has no case here: it names stores, not CAs,
// and the agent sets it to `system` itself for this identity (its cases are above).
const viaEnvForSystemTrust: Array<[string, (i: Impostor) => Promise<Record<string, string>>]> = [
  ["SSL_CERT_FILE", (i) => Promise.resolve({ SSL_CERT_FILE: i.caFile })],
  ["SSL_CERT_DIR", async (i) => {
    const certDir = join(i.dir, "certdir");
    await Deno.mkdir(certDir);
    await Deno.copyFile(i.caFile, join(certDir, "impostor.pem"));
    return { SSL_CERT_DIR: certDir };
  }],
  ["DENO_CERT", (i) => Promise.resolve({ DENO_CERT: i.caFile })],
  ["NODE_EXTRA_CA_CERTS", (i) => Promise.resolve({ NODE_EXTRA_CA_CERTS: i.caFile })],
];

for (const [variable, envFor] of viaEnvForSystemTrust) {
  Deno.test({
    name:
      `an impostor CA in ${variable} is not trusted by an agent whose identity trusts the OS store`,
    ignore: skipWithout(!noOpenssl),
    async fn() {
      await using dir = await tempDir();
      await using impostor = await startImpostor(dir.path);
      const stateDir = await enrolledState(dir.path, impostor.url, "system");
      const env = await envFor(impostor);
      await assertCaseLive(impostor, env);
      const result = await runOnce(stateDir, env);
      assert.equal(result.code, 4, result.stderr);
      assert.match(
        result.stderr,
        /^error: Cannot send heartbeat: TLS handshake with "127\.0\.0\.1:\d+" failed: certificate issued by "Test Issuing CA" /m,
      );
      assert.deepEqual(impostor.requests, [], "a request reached the impostor");
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
    const preload = repoPath("tests", "fixtures", "early_tls_client.ts");
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
