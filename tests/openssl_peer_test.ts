/**
 * The agent against openssl, a peer this project did not write: openssl checks the agent's CSR,
 * acts as a CA, and serves TLS with `s_server`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createCsr, generateAgentKeyPair, splitPemBundle } from "../src/trust/certificates.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { sharedOpensslPki } from "./_support/openssl_pki.ts";
import { enrollArgs, findTool, runAgent, skipWithout, tempDir } from "./_support/helpers.ts";

const OPENSSL = findTool("openssl");
const decoder = new TextDecoder();

/** Runs openssl; fails the test on a non-zero exit unless `allowFailure`. */
async function openssl(
  args: string[],
  options: { cwd?: string; allowFailure?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(OPENSSL ?? "openssl", {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const result = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (!options.allowFailure && out.code !== 0) {
    throw new Error(`openssl ${args.join(" ")} failed (${out.code}): ${result.stderr}`);
  }
  return result;
}

Deno.test({
  name: "the agent's CSR passes openssl req -verify, with its subject and its own public key",
  ignore: skipWithout(OPENSSL !== null),
}, async () => {
  await using dir = await tempDir();
  const keys = await generateAgentKeyPair();
  const csr = join(dir.path, "agent.csr");
  // A hostname that would inject RDNs if the subject were built from a string.
  await Deno.writeTextFile(csr, await createCsr(keys, "host-1.example,O=Evil"));

  const verify = await openssl(["req", "-in", csr, "-verify", "-noout"], { allowFailure: true });
  assert.equal(verify.code, 0, verify.stderr);
  // openssl 3.0 exits 0 even on a bad signature: the verdict is this line.
  assert.match(verify.stdout + verify.stderr, /self-signature verify OK/);
  assert.doesNotMatch(verify.stdout + verify.stderr, /failure/);

  const subject = await openssl([
    "req",
    "-in",
    csr,
    "-noout",
    "-subject",
    "-nameopt",
    "RFC2253",
  ]);
  // One CN holding the comma, not a second O= RDN.
  assert.equal(subject.stdout.trim(), "subject=CN=host-1.example\\,O=Evil");

  // The key openssl extracts from the CSR is the agent's key pair's public half.
  const fromCsr = (await openssl(["req", "-in", csr, "-noout", "-pubkey"])).stdout;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const b64 = btoa(String.fromCharCode(...spki)).replace(/.{64}/g, "$&\n").trimEnd();
  assert.equal(fromCsr.trim(), `-----BEGIN PUBLIC KEY-----\n${b64}\n-----END PUBLIC KEY-----`);
  const text = (await openssl(["req", "-in", csr, "-noout", "-text"])).stdout;
  assert.match(text, /Public Key Algorithm: id-ecPublicKey/);
  assert.match(text, /NIST CURVE: P-256/);
  assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);

  // And a CSR whose signature does not match its key fails the same check.
  const der = Uint8Array.from(
    atob((await Deno.readTextFile(csr)).replace(/-----[A-Z ]+-----|\s/g, "")),
    (c) => c.charCodeAt(0),
  );
  der[der.length - 5]! ^= 0xff;
  const tampered = join(dir.path, "tampered.der");
  await Deno.writeFile(tampered, der);
  const bad = await openssl(["req", "-inform", "DER", "-in", tampered, "-verify", "-noout"], {
    allowFailure: true,
  });
  // openssl 3.0 exits 0 either way: the verdict is the printed line.
  assert.match(bad.stdout + bad.stderr, /verify failure/, "a tampered CSR must fail the check");
  assert.doesNotMatch(bad.stdout + bad.stderr, /verify OK/);
});

/**
 * `openssl s_server -www` on an ephemeral loopback port, presenting the openssl PKI's server leaf
 * and its issuing CA (the agent is given only the root).
 */
async function sServer(dir: string): Promise<AsyncDisposable & { url: URL }> {
  const pki = await sharedOpensslPki();
  const [leaf, ...chain] = splitPemBundle(pki.serverChain.certPem);
  await Deno.writeTextFile(join(dir, "server.crt"), leaf!);
  await Deno.writeTextFile(join(dir, "chain.crt"), chain.join(""));
  await Deno.writeTextFile(join(dir, "server.key"), pki.serverChain.keyPem);
  const child = new Deno.Command(OPENSSL ?? "openssl", {
    args: [
      "s_server",
      "-accept",
      "127.0.0.1:0",
      "-cert",
      join(dir, "server.crt"),
      "-cert_chain",
      join(dir, "chain.crt"),
      "-key",
      join(dir, "server.key"),
      "-www",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const stop = async () => {
    try {
      child.kill();
    } catch {
      // exited
    }
    await drain.catch(() => {});
    await child.status;
  };
  let drain: Promise<void> = Promise.resolve();
  const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    while (!/ACCEPT .*:\d+\n/.test(out)) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`openssl s_server did not start: ${out}`);
      out += value;
    }
  } catch (e) {
    await child.status;
    throw e;
  } finally {
    clearTimeout(deadline);
  }
  drain = (async () => {
    while (!(await reader.read()).done) { /* keep the pipe flowing */ }
  })();
  const port = out.match(/ACCEPT .*:(\d+)\n/)![1];
  return { url: new URL(`https://127.0.0.1:${port}/`), [Symbol.asyncDispose]: stop };
}

Deno.test({
  name:
    "enroll --check verifies openssl s_server's chain from an openssl CA, and refuses another CA",
  ignore: skipWithout(OPENSSL !== null),
}, async () => {
  await using dir = await tempDir();
  const caFile = (await sharedOpensslPki()).rootFile;
  const otherCa = join(dir.path, "other-ca.pem");
  await Deno.writeTextFile(otherCa, (await createDevCa({ commonName: "Some Other CA" })).certPem);
  await using server = await sServer(dir.path);
  const check = (ca: string) =>
    runAgent([
      "--state-dir",
      join(dir.path, "state"),
      ...enrollArgs({ url: server.url, caFile: ca }, "--check"),
    ]);

  const good = await check(caFile);
  assert.match(good.stdout, /^ok +tls /m, good.stdout);
  // s_server -www answers an HTML status page, not the health document.
  assert.match(good.stdout, /^fail +health /m, good.stdout);
  assert.equal(good.code, 4, good.stderr);

  const bad = await check(otherCa);
  assert.equal(bad.code, 4, bad.stderr);
  assert.match(
    bad.stdout,
    /^fail +tls +certificate of 127\.0\.0\.1:\d+ not accepted .*issued by "Test Issuing CA"/m,
    bad.stdout,
  );
  assert.match(bad.stdout, /^skip +health /m);
});
