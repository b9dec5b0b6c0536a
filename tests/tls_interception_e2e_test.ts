/**
 * End to end against a real intercepting proxy (Debian's squid-openssl, `ssl_bump bump all`, its
 * own openssl-made CA): enrollment, `run`, `status` and `enroll --check` name the CA that issued
 * the certificate they were shown, and nothing secret goes through.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollAgent, enrollArgs, runAgent, tempDir } from "./_support/helpers.ts";
import { opensslAvailable } from "./_support/openssl_pki.ts";
import { HAVE_SQUID_BUMP, startBumpingSquid } from "./_support/squid_bump.ts";

const ignore = !opensslAvailable() || !HAVE_SQUID_BUMP;
const INTERCEPTED =
  /TLS handshake with "127\.0\.0\.1:\d+" failed: certificate issued by "Contoso Inspection CA" \(subject "[^"]+"\), not by "OneConnect Dev CA" \((the CA file|the trusted CA bundle)\); a TLS-inspecting proxy is probably in the path: exempt this host from inspection, or enroll with --ca-file\/--ca-pin \(or (the CA file|the trusted CA bundle) is not the platform's CA\)/;

Deno.test({
  name: "behind squid ssl_bump, enroll names the inspecting CA and spends no token",
  ignore,
  async fn() {
    await using dir = await tempDir();
    await using platform = await startDevPlatform({ quiet: true });
    // squid's own temp dir: it is handed to squid's user, the state dir's parents must not be.
    await using squidDir = await tempDir("oneconnect-squid-");
    await using squid = await startBumpingSquid(squidDir.path, "Contoso Inspection CA");
    const result = await runAgent([
      "--state-dir",
      join(dir.path, "state"),
      ...enrollArgs(platform, "--token-file", "-"),
    ], { stdin: platform.mintEnrollmentToken(), env: { HTTPS_PROXY: squid.url } });
    assert.equal(result.code, 4, result.stderr);
    const last = result.stderr.trim().split("\n").at(-1)!;
    assert.match(last, /^error: Cannot enroll: /);
    assert.match(last, INTERCEPTED);
    assert.deepEqual(platform.agents(), []);
  },
});

Deno.test({
  name: "behind squid ssl_bump, run and status name the inspecting CA; no heartbeat gets through",
  ignore,
  async fn() {
    await using dir = await tempDir();
    await using platform = await startDevPlatform({ quiet: true });
    const stateDir = join(dir.path, "state");
    const agentId = await enrollAgent(platform, stateDir);
    // squid's own temp dir: it is handed to squid's user, the state dir's parents must not be.
    await using squidDir = await tempDir("oneconnect-squid-");
    await using squid = await startBumpingSquid(squidDir.path, "Contoso Inspection CA");
    const run = await runAgent(["--state-dir", stateDir, "run", "--once"], {
      env: { HTTPS_PROXY: squid.url },
    });
    assert.equal(run.code, 4, run.stderr);
    assert.match(run.stderr.trim().split("\n").at(-1)!, INTERCEPTED);
    assert.equal(platform.heartbeats(agentId).length, 0);
    const status = await runAgent(["--state-dir", stateDir, "status"]);
    assert.match(status.stdout, INTERCEPTED);
    const check = await runAgent([
      "--state-dir",
      join(dir.path, "check"),
      ...enrollArgs(platform, "--check"),
    ], { env: { HTTPS_PROXY: squid.url } });
    assert.equal(check.code, 4, check.stderr);
    assert.match(check.stdout, /^fail +health +.*certificate issued by "Contoso Inspection CA"/m);
  },
});
