/**
 * End to end: `ca-pin` agrees with openssl, and `enroll --ca-pin` trusts exactly the presented CA
 * whose key matches (an openssl-made root -> intermediate -> server PKI in front of the dev
 * platform), or sends nothing when none does.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollArgs, runAgent, tempDir } from "./_support/helpers.ts";
import { OPENSSL_BIN, opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

const ignore = !opensslAvailable();

/** The openssl-made PKI (root -> issuing CA -> server) with the file of each certificate. */
async function pki(_dir: string) {
  const made = await sharedOpensslPki();
  const file = (name: string) => join(made.dir, `${name}.crt`);
  return {
    root: { certFile: file("root"), certPem: made.root.certPem },
    intermediate: { certFile: file("issuing"), certPem: made.issuing.certPem },
    leaf: {
      certFile: file("server"),
      certPem: made.serverChain.certPem,
      keyPem: made.serverChain.keyPem,
    },
  };
}

/** The pin of a PEM certificate as the openssl one-liner of docs/networks.md computes it. */
async function opensslPin(certFile: string): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      `${OPENSSL_BIN} x509 -in "$1" -pubkey -noout | ${OPENSSL_BIN} pkey -pubin -outform der | ${OPENSSL_BIN} dgst -sha256`,
      "sh",
      certFile,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const hex = /([0-9a-f]{64})\s*$/.exec(new TextDecoder().decode(out.stdout))?.[1];
  if (!hex) throw new Error("openssl printed no SHA-256");
  return `sha256:${hex}`;
}

Deno.test({
  name: "ca-pin prints, for every certificate of a PEM file, the value openssl's one-liner gives",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const { root, intermediate } = await pki(dir.path);
    const bundle = join(dir.path, "bundle.pem");
    await Deno.writeTextFile(bundle, root.certPem + intermediate.certPem);
    const result = await runAgent(["ca-pin", bundle]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, new RegExp(`^${await opensslPin(root.certFile)}  .*CN=Test Root CA$`));
    assert.match(
      lines[1]!,
      new RegExp(`^${await opensslPin(intermediate.certFile)}  .*CN=Test Issuing CA$`),
    );
  },
});

Deno.test({
  name: "enroll --ca-pin trusts the presented CA matching the pin, and the agent keeps trusting it",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const { intermediate, leaf } = await pki(dir.path);
    await using platform = await startDevPlatform({
      quiet: true,
      serverCertificate: { certPem: leaf.certPem, keyPem: leaf.keyPem },
    });
    const stateDir = join(dir.path, "state");
    const pin = await opensslPin(intermediate.certFile);
    const enroll = await runAgent([
      "--state-dir",
      stateDir,
      ...enrollArgs({ url: platform.url }, "--ca-pin", pin, "--token-file", "-"),
    ], { stdin: platform.mintEnrollmentToken() });
    assert.equal(enroll.code, 0, enroll.stderr);
    const identity = JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
    assert.deepEqual(identity.trust, { source: "ca_pin", ca_pins: [pin] });
    const check = await runAgent([
      "--state-dir",
      join(dir.path, "check"),
      ...enrollArgs({ url: platform.url }, "--check"),
    ], { env: { ONECONNECT_CA_PIN: pin } });
    assert.equal(check.code, 0, check.stderr);
    assert.match(
      check.stdout,
      new RegExp(
        `^ok +tls +certificate of 127\\.0\\.0\\.1:\\d+ verified against the presented CA certificate matching --ca-pin ${pin}$`,
        "m",
      ),
    );
    assert.deepEqual(identity.bootstrap_ca_certificates, [intermediate.certPem]);
    const once = await runAgent(["--state-dir", stateDir, "run", "--once"]);
    assert.equal(once.code, 0, once.stderr);
    assert.equal(platform.heartbeats(identity.agent_id).length, 1);
  },
});

Deno.test({
  name:
    "enroll --ca-pin with a pin of no presented CA (the root, not presented; the server's own, no CA) names what it saw and sends no token",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const { root, intermediate, leaf } = await pki(dir.path);
    await using platform = await startDevPlatform({
      quiet: true,
      serverCertificate: { certPem: leaf.certPem, keyPem: leaf.keyPem },
    });
    // The server's own certificate is presented, but pinning it would trust a non-CA key.
    for (const [name, certFile] of [["root", root.certFile], ["server", leaf.certFile]]) {
      const wrong = await opensslPin(certFile!);
      const token = platform.mintEnrollmentToken();
      const enroll = await runAgent([
        "--state-dir",
        join(dir.path, `state-${name}`),
        ...enrollArgs({ url: platform.url }, "--ca-pin", wrong, "--token-file", "-"),
      ], { stdin: token });
      assert.equal(enroll.code, 4, `${name}: ${enroll.stderr}`);
      const line = enroll.stderr.trim().split("\n").at(-1)!;
      assert.match(
        line,
        /^error: Cannot enroll: no CA certificate presented by "127\.0\.0\.1:\d+" matches --ca-pin /,
      );
      assert.ok(line.includes(await opensslPin(intermediate.certFile)), line);
      assert.ok(line.includes(await opensslPin(leaf.certFile)), line);
      assert.equal(platform.requestCount, 0, `${name}: a request reached the platform`);
      assert.deepEqual(platform.agents(), []);
    }
  },
});

Deno.test("enroll --ca-pin refuses a malformed pin before anything else (exit 2)", async () => {
  await using dir = await tempDir();
  const result = await runAgent([
    "--state-dir",
    join(dir.path, "state"),
    ...enrollArgs({ url: "https://127.0.0.1:1/" }, "--ca-pin", "sha256:abc"),
  ], { env: { ONECONNECT_ENROLLMENT_TOKEN: "t" } });
  assert.equal(result.code, 2, result.stderr);
  assert.match(
    result.stderr,
    /^error: Invalid CA pin "sha256:abc" \(--ca-pin\): expected sha256:<64 hex digits>/m,
  );
});
