/**
 * Edges answer with their own pages: the CLI against a stock nginx (its default HTML error pages,
 * nothing of this project's) in front of the dev platform. Only the platform's problem document
 * with a contract rejection code may stop `run`; nginx's "client certificate" pages must say
 * `use --auth mtls`; a transient `return 403` must leave `run` running.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createDevCa, issueClientCertificate } from "../tasks/dev_platform/dev_ca.ts";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  enrollAgent,
  enrollArgs,
  errorLine,
  logLines,
  runAgent,
  runOnce,
  spawnAgent,
  startRun,
  stateDirWith,
  tempDir,
  until,
} from "./_support/helpers.ts";
import { NGINX_BIN, nginxAvailable, startNginxFor } from "./_support/nginx.ts";

const NGINX_REQUIRED = (Deno.env.get("ONECONNECT_REQUIRE_NGINX") ?? "") !== "";
const HAVE_NGINX = nginxAvailable();
const PROXY_SECRET = "edge-pages-proxy-secret";
const decoder = new TextDecoder();

if (!HAVE_NGINX && !NGINX_REQUIRED) {
  console.error(
    `\n!!! SKIPPING the stock nginx tests (tests/edge_pages_e2e_test.ts): no nginx at ${NGINX_BIN}.` +
      "\n!!! Install nginx-light to run them; CI (.ci/run) does and sets ONECONNECT_REQUIRE_NGINX=1.\n",
  );
}

/** A copy of the enrolled state dir pointing at `url`, with `identity` changes applied. */
async function stateDirFor(
  stateDir: string,
  url: URL,
  changes: Record<string, unknown> = {},
) {
  const identity = JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
  return await stateDirWith(
    { ...identity, platform_url: url.href, ...changes },
    "oneconnect-edge-",
  );
}

Deno.test({
  name:
    "stock nginx error pages: certificate pages say use --auth mtls, a transient 403 never stops run",
  ignore: !HAVE_NGINX && !NGINX_REQUIRED,
  async fn(t) {
    if (!HAVE_NGINX) {
      throw new Error(`ONECONNECT_REQUIRE_NGINX is set but there is no nginx at ${NGINX_BIN}`);
    }
    await using platform = await startDevPlatform({
      quiet: true,
      requireMtls: true,
      proxySecret: PROXY_SECRET,
    });
    const edge = (verifyClient: "on" | "optional") =>
      startNginxFor(platform, PROXY_SECRET, { verifyClient, stockErrorPages: true });
    await using optional = await edge("optional");
    await using on = await edge("on");
    await using state = await tempDir("oneconnect-edge-");
    const agentId = await enrollAgent(
      platform,
      state.path,
      optional.url,
      () => optional.errorLog(),
    );
    const beats = () => platform.heartbeats(agentId).length;

    await t.step(
      "ssl_verify_client on, no certificate: nginx's 400 page -> use --auth mtls",
      async () => {
        await using dir = await stateDirFor(state.path, on.url);
        const before = platform.requestCount;
        const result = await runOnce(dir.path, "bearer");
        assert.equal(result.code, 4, result.stderr);
        assert.equal(
          errorLine(result),
          'error: Cannot send heartbeat: platform answered 400 with "text/html", not JSON (page title "400 No required SSL certificate was sent"); the edge requires a client certificate: use --auth mtls (or ONECONNECT_AUTH=mtls)',
        );
        assert.equal(platform.requestCount, before, "nginx answered, not the platform");
      },
    );

    await t.step("ssl_verify_client on, agent certificate: accepted", async () => {
      await using dir = await stateDirFor(state.path, on.url);
      const before = beats();
      const result = await runOnce(dir.path, "mtls");
      assert.equal(result.code, 0, `${result.stderr}\n${await on.errorLog()}`);
      assert.equal(beats(), before + 1);
      assert.equal(platform.heartbeats(agentId).at(-1)?.auth, "mtls");
    });

    await t.step(
      "ssl_verify_client on, certificate of another CA: nginx's 400 page, exit 4",
      async () => {
        const foreignCa = await createDevCa({ commonName: "Foreign CA" });
        const pair = await issueClientCertificate(foreignCa, { agentId });
        await using dir = await stateDirFor(state.path, on.url, {
          certificate: pair.certPem,
          private_key: pair.keyPem,
        });
        const result = await runOnce(dir.path, "mtls");
        assert.equal(result.code, 4, result.stderr);
        assert.match(
          errorLine(result),
          /^error: Cannot send heartbeat: platform answered 400 with "text\/html", not JSON \(page title "400 The SSL certificate error"\); the edge rejected the client certificate$/,
        );
      },
    );

    await t.step(
      "ssl_verify_client optional, no certificate: the platform's problem -> use --auth mtls",
      async () => {
        const result = await runOnce(state.path, "bearer");
        assert.equal(result.code, 4, result.stderr);
        assert.match(
          errorLine(result),
          /^error: Cannot send heartbeat: platform answered 401 client_certificate_required: .*; the edge requires a client certificate: use --auth mtls/,
        );
        assert.doesNotMatch(result.stderr, /re-enroll/);
      },
    );

    await t.step("ssl_verify_client optional, agent certificate: accepted", async () => {
      const before = beats();
      const result = await runOnce(state.path, "mtls");
      assert.equal(result.code, 0, `${result.stderr}\n${await optional.errorLog()}`);
      assert.equal(beats(), before + 1);
    });

    await t.step(
      "nginx `return 403` for a few seconds: run keeps going and heartbeats resume",
      async () => {
        await using run = startRun(state.path, ["--auth", "mtls", "--interval", "1"]);
        let exitedEarly = false;
        run.exited().then(() => exitedEarly = true, () => exitedEarly = true);
        try {
          const start = beats();
          await until(() => beats() >= start + 2, "two heartbeats before the 403s", 30_000);
          await optional.block(true);
          const blocked = beats();
          await new Promise((r) => setTimeout(r, 4_000));
          assert.equal(exitedEarly, false, "run stopped on an edge's HTML 403");
          assert.ok(beats() <= blocked + 1, "heartbeats got through the 403");
          await optional.block(false);
          await until(() => beats() >= blocked + 3, "heartbeats after the 403s", 60_000);
          assert.equal(exitedEarly, false);
        } finally {
          await optional.block(false);
        }
        const { code, stderr } = await run.terminate();
        assert.equal(code, 0, stderr);
        const logs = logLines(stderr);
        const warnings = logs.filter((l) => l.level === "warn").map((l) => String(l.msg));
        assert.equal(warnings.length, 1, stderr);
        assert.match(
          warnings[0]!,
          /platform answered 403 with "text\/html", not JSON \(page title "403 Forbidden"\) \("text\/html", not a platform rejection: retrying\)$/,
        );
        assert.doesNotMatch(stderr, /<html|<center|nginx<\/center>/i, "no page body in the logs");
        assert.ok(logs.some((l) => String(l.msg).startsWith("Heartbeats recovered after")), stderr);
      },
    );

    assert.deepEqual(platform.contractViolations, []);
  },
});

Deno.test({
  name:
    "stock nginx HTML 401 in front of enrollment: retried within --timeout, exit 4, token kept; enrolls once it is gone",
  ignore: !HAVE_NGINX && !NGINX_REQUIRED,
  async fn() {
    if (!HAVE_NGINX) {
      throw new Error(`ONECONNECT_REQUIRE_NGINX is set but there is no nginx at ${NGINX_BIN}`);
    }
    await using platform = await startDevPlatform({ quiet: true });
    await using nginx = await startNginxFor(platform, PROXY_SECRET, { stockErrorPages: true });
    await using dir = await tempDir("oneconnect-edge-enroll-");
    const stateDir = join(dir.path, "state");
    const tokenFile = join(dir.path, "enrollment.token");
    await Deno.writeTextFile(tokenFile, platform.mintEnrollmentToken() + "\n", { mode: 0o600 });
    const enroll = (timeout: string) => [
      "--state-dir",
      stateDir,
      ...enrollArgs(
        { url: nginx.url, caFile: platform.caFile },
        "--token-file",
        tokenFile,
        "--timeout",
        timeout,
      ),
    ];
    await nginx.blockEnrollment(true);
    const refused = await runAgent(enroll("3"));
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(
      errorLine(refused),
      /^error: Cannot enroll: gave up after 3 s \(--timeout\) and \d+ attempts: platform answered 401 with "text\/html", not JSON \(page title "401 Authorization Required"\) \("text\/html", not a platform rejection: gave up\)$/,
    );
    assert.match(refused.stderr, /Enrollment attempt failed; retrying/);
    assert.doesNotMatch(refused.stderr, /new enrollment token|<html|<center/i);
    assert.equal(await Deno.stat(tokenFile).then(() => true), true, "token kept");
    assert.equal(await Deno.stat(join(stateDir, "identity.json")).catch(() => null), null);
    assert.equal(platform.agents().length, 0);

    // The edge recovers while enroll retries: the same token enrolls.
    const child = spawnAgent(enroll("60"));
    const output = child.output();
    await new Promise((r) => setTimeout(r, 1_500));
    await nginx.blockEnrollment(false);
    const out = await output;
    const stderr = decoder.decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(stderr, /Enrollment attempt failed; retrying/);
    assert.equal(platform.agents().length, 1);
    assert.deepEqual(platform.contractViolations, []);
  },
});
