import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  certificateFingerprint,
  enrollAgent,
  enrollArgs,
  fromFileUrl,
  logLines,
  rejectsWith,
  repoPath,
  runAgent,
  skipWithout,
  spawnAgent,
  tempDir,
  until,
} from "./_support/helpers.ts";
import { OPENSSL_BIN, opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

Deno.test("a spawned agent that outlives its deadline is killed and fails the test", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  await enrollAgent(platform, dir.path);
  // `run` never ends on its own.
  await assert.rejects(
    () => runAgent(["--state-dir", dir.path, "run"], { deadlineMs: 3_000 }),
    /^Error: oneconnect-agent --state-dir \S+ run still running after 3 s: killed, test failed$/,
  );
  const child = spawnAgent(["--state-dir", dir.path, "run"], { deadlineMs: 3_000 });
  await assert.rejects(() => child.status, /still running after 3 s/);
  await assert.rejects(() => child.output(), /still running after 3 s/);
});

Deno.test("rejectsWith returns the error of its type and fails on a resolve or another type", async () => {
  const error = await rejectsWith(Promise.reject(new RangeError("out")), RangeError);
  assert.equal(error.message, "out");
  await assert.rejects(
    () => rejectsWith(Promise.resolve(1), Error),
    /expected Error, got null/,
  );
  await assert.rejects(
    () => rejectsWith(Promise.reject(new TypeError("t")), RangeError),
    /expected RangeError, got TypeError: t/,
  );
});

Deno.test("until resolves once the condition holds and fails naming what it waited for", async () => {
  let n = 0;
  await until(() => ++n >= 3, "three polls");
  assert.equal(n, 3);
  await assert.rejects(
    () => until(() => false, "never", 60),
    /^Error: timed out waiting for never$/,
  );
});

Deno.test("logLines parses the JSON lines of stderr and skips the rest", () => {
  const stderr = '{"level":"info","msg":"Started"}\nerror: plain\n{"level":"warn","msg":"x"}\n';
  assert.deepEqual(logLines(stderr).map((l) => l.msg), ["Started", "x"]);
});

Deno.test("enrollArgs adds --ca-file only for a target that has one", () => {
  assert.deepEqual(enrollArgs({ url: "https://p/" }, "--check"), [
    "enroll",
    "--url",
    "https://p/",
    "--check",
  ]);
  assert.deepEqual(enrollArgs({ url: new URL("https://p/"), caFile: "/ca.pem" }, "-"), [
    "enroll",
    "--url",
    "https://p/",
    "--ca-file",
    "/ca.pem",
    "-",
  ]);
});

Deno.test({
  name: "certificateFingerprint agrees with openssl's SHA-256 fingerprint",
  ignore: skipWithout(opensslAvailable()),
  async fn() {
    const pki = await sharedOpensslPki();
    const out = await new Deno.Command(OPENSSL_BIN, {
      args: ["x509", "-noout", "-fingerprint", "-sha256", "-in", join(pki.dir, "issuing.crt")],
      stdout: "piped",
    }).output();
    const openssl = new TextDecoder().decode(out.stdout).trim().split("=")[1]!;
    assert.equal(
      await certificateFingerprint(pki.issuing.certPem + pki.root.certPem),
      openssl.replaceAll(":", "").toLowerCase(),
    );
  },
});

Deno.test("fromFileUrl decodes a file URL to this platform's path; repoPath joins under the root", () => {
  if (Deno.build.os === "windows") {
    assert.equal(fromFileUrl("file:///C:/a%20b/c.txt"), "C:\\a b\\c.txt");
  } else {
    assert.equal(fromFileUrl("file:///tmp/a%20b/c%23.txt"), "/tmp/a b/c#.txt");
  }
  const root = repoPath();
  assert.ok(!root.endsWith("/") && !root.endsWith("\\"), root);
  assert.equal(repoPath("deno.json"), join(root, "deno.json"));
  assert.ok(Deno.statSync(repoPath("deno.json")).isFile);
});
