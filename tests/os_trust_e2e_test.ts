/**
 * End to end: without --ca-file or --ca-pin the agent trusts the operating system's store, at
 * enrollment and afterwards (a CA added with Debian's update-ca-certificates, removed again in
 * `finally`), although the platform's `ca_certificates` do not include the server's CA.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollArgs, runAgent, skipWithout, tempDir } from "./_support/helpers.ts";
import { opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

const UPDATE = "/usr/sbin/update-ca-certificates";
const canEditStore = Deno.build.os === "linux" && Deno.uid() === 0 &&
  (await Deno.stat(UPDATE).then(() => true, () => false));

async function updateStore(): Promise<void> {
  const out = await new Deno.Command(UPDATE, { stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

Deno.test({
  name: "enroll without --ca-file trusts the OS store (update-ca-certificates), and run keeps it",
  ignore: skipWithout(opensslAvailable() && canEditStore),
  async fn() {
    await using dir = await tempDir();
    const pki = await sharedOpensslPki();
    const ca = { certFile: pki.rootFile, certPem: pki.root.certPem };
    await using platform = await startDevPlatform({
      quiet: true,
      serverCertificate: pki.serverChain,
    });
    const stateDir = join(dir.path, "state");
    const installed = `/usr/local/share/ca-certificates/oneconnect-test-${crypto.randomUUID()}.crt`;
    await Deno.copyFile(ca.certFile, installed);
    try {
      await updateStore();
      const enroll = await runAgent([
        "--state-dir",
        stateDir,
        ...enrollArgs({ url: platform.url }, "--token-file", "-"),
      ], { stdin: platform.mintEnrollmentToken() });
      assert.equal(enroll.code, 0, enroll.stderr);
      assert.equal(
        enroll.stderr.split("\n").filter((l) => l.includes("WARN")).length,
        1,
        enroll.stderr,
      );
      assert.match(
        enroll.stderr,
        /WARN +Trusting the operating system's trust store for the platform's server \(no --ca-file or --ca-pin\)/,
      );
      const identity = JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
      assert.deepEqual(identity.trust, { source: "system" });
      assert.ok(!identity.ca_certificates.includes(ca.certPem));
      const once = await runAgent(["--state-dir", stateDir, "run", "--once"]);
      assert.equal(once.code, 0, once.stderr);
      assert.equal(platform.heartbeats(identity.agent_id).length, 1);
      // diagnostics' preflight trusts what run trusts: the OS store.
      const bundle = join(dir.path, "bundle.tar.gz");
      const diag = await runAgent(["--state-dir", stateDir, "diagnostics", "--output", bundle]);
      assert.equal(diag.code, 0, diag.stderr);
      const tar = await new Deno.Command("tar", {
        args: ["-xzOf", bundle, "--wildcards", "*/preflight.json"],
      })
        .output();
      const preflight = JSON.parse(new TextDecoder().decode(tar.stdout));
      assert.deepEqual(
        preflight.checks.map((c: { name: string; status: string }) => `${c.name}:${c.status}`),
        ["route:ok", "dns:skip", "tcp:ok", "tls:ok", "health:ok", "clock:ok"],
        JSON.stringify(preflight),
      );
    } finally {
      await Deno.remove(installed).catch(() => {});
      await updateStore();
    }
    // The control: with the CA gone from the OS store, the same identity is refused.
    const after = await runAgent(["--state-dir", stateDir, "run", "--once"]);
    assert.equal(after.code, 4, after.stderr);
    assert.match(
      after.stderr,
      /issued by "Test Issuing CA" .*, but the trusted CA bundle holds "OneConnect Dev CA", not "Test Issuing CA"/,
    );
  },
});
