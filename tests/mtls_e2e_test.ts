/**
 * The real mTLS gate: the CLI talks to the dev platform through a real nginx that terminates
 * mutual TLS, as a production edge would, and the platform trusts the client certificate only
 * from that proxy (`requireMtls` with a proxy secret).
 *
 * The agent enrolls through nginx too. The edge runs `ssl_verify_client optional`: it passes
 * `/api/v1/agents/enroll` (and health) without a client certificate, because an enrolling host has
 * none yet, and answers 401 on every other route without a verified one. So one public URL serves
 * the whole lifecycle and the identity's `platform_url` is the edge's, as in a real deployment.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  createDevCa,
  issueClientCertificate,
  issueServerCertificate,
} from "../tasks/dev_platform/dev_ca.ts";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  certificateFingerprint,
  enrollAgent,
  errorLine,
  runOnce,
  skipWithout,
  stateDirWith,
  tempDir,
} from "./_support/helpers.ts";
import { NGINX_BIN, nginxAvailable, startNginxFor } from "./_support/nginx.ts";

const HAVE_NGINX = nginxAvailable();
const PROXY_SECRET = "mtls-e2e-proxy-secret";

if (skipWithout(HAVE_NGINX)) {
  console.error(
    `\n!!! SKIPPING the mTLS gate (tests/mtls_e2e_test.ts): nginx is not installed at ${NGINX_BIN}.` +
      "\n!!! Install nginx-light to run it; CI (.ci/run) does and sets ONECONNECT_REQUIRE_TOOLS=1.\n",
  );
}

interface Identity {
  agent_id: string;
  platform_url: string;
  certificate: string;
  private_key: string;
  [field: string]: unknown;
}

Deno.test({
  name: "mTLS gate through a real nginx admits the agent certificate and refuses everything else",
  ignore: skipWithout(HAVE_NGINX),
  async fn(t) {
    if (!HAVE_NGINX) {
      throw new Error(
        `CI requires every tool, but nginx is not installed at ${NGINX_BIN}: install nginx-light`,
      );
    }
    await using platform = await startDevPlatform({
      quiet: true,
      requireMtls: true,
      proxySecret: PROXY_SECRET,
    });
    await using nginx = await startNginxFor(platform, PROXY_SECRET);
    await using state = await tempDir("oneconnect-mtls-");
    await enrollAgent(platform, state.path, nginx.url, () => nginx.errorLog());
    const identity: Identity = JSON.parse(
      await Deno.readTextFile(join(state.path, "identity.json")),
    );
    assert.equal(identity.platform_url, nginx.url.href);
    const agentId = identity.agent_id;
    const foreignCa = await createDevCa({ commonName: "Foreign CA" });

    await t.step("run --once --auth mtls succeeds and sends no Authorization header", async () => {
      const result = await runOnce(state.path, "mtls");
      assert.equal(result.code, 0, `${result.stderr}\n${await nginx.errorLog()}`);
      assert.equal(result.stdout, "");
      const records = platform.heartbeats(agentId);
      assert.equal(records.length, 1);
      const record = records[0]!;
      // "mtls" is only recorded for a certificate nginx verified and forwarded with the secret.
      assert.equal(record.auth, "mtls");
      assert.equal(record.had_authorization, false);
      assert.equal(
        record.client_cert_fingerprint,
        await certificateFingerprint(identity.certificate),
      );
    });

    await t.step(
      "run --once --auth bearer is refused for want of a client certificate",
      async () => {
        const before = platform.requestCount;
        const result = await runOnce(state.path, "bearer");
        // A configuration problem, not a rejection of the credential: a failed attempt (exit 4).
        assert.equal(result.code, 4, result.stderr);
        const line = errorLine(result);
        assert.match(
          line,
          /^error: Cannot send heartbeat: platform answered 401 client_certificate_required: .*requires a client certificate; the edge requires a client certificate: use --auth mtls/,
        );
        assert.doesNotMatch(line, /re-enroll/);
        assert.equal(platform.requestCount, before, "nginx must refuse it before the platform");
        assert.equal(platform.heartbeats(agentId).length, 1);
      },
    );

    await t.step("a client certificate from another CA is refused", async () => {
      // Same agent id, consistent key and certificate: only the issuer is wrong.
      const pair = await issueClientCertificate(foreignCa, { agentId });
      const cert = new x509.X509Certificate(pair.certPem);
      await using foreign = await stateDirWith({
        ...identity,
        certificate: pair.certPem,
        private_key: pair.keyPem,
        certificate_not_before: cert.notBefore.toISOString(),
        certificate_not_after: cert.notAfter.toISOString(),
      }, "oneconnect-mtls-");
      const before = platform.requestCount;
      const result = await runOnce(foreign.path, "mtls");
      // `client_certificate_invalid` is no rejection code of the contract: a failed attempt.
      assert.equal(result.code, 4, result.stderr);
      assert.equal(
        errorLine(result),
        "error: Cannot send heartbeat: platform answered 401 client_certificate_invalid: client certificate rejected by the TLS proxy",
      );
      assert.equal(platform.requestCount, before, "nginx must refuse it before the platform");
      assert.equal(platform.heartbeats(agentId).length, 1);
    });

    await t.step("an edge serving a certificate outside the pinned CAs is refused", async () => {
      // A working edge in front of the real platform, except that its server certificate comes
      // from another CA: had the agent trusted it, the heartbeat would reach the platform.
      const impostorCert = await issueServerCertificate(foreignCa);
      await using impostor = await startNginxFor(platform, PROXY_SECRET, {
        serverCertPem: impostorCert.certPem,
        serverKeyPem: impostorCert.keyPem,
      });
      await using moved = await stateDirWith(
        { ...identity, platform_url: impostor.url.href },
        "oneconnect-mtls-",
      );
      const before = platform.requestCount;
      const result = await runOnce(moved.path, "mtls");
      assert.equal(result.code, 4, result.stderr);
      assert.equal(
        errorLine(result),
        `error: Cannot send heartbeat: TLS handshake with "127.0.0.1:${impostor.url.port}" failed: certificate issued by "${
          foreignCa.cert.subjectName.getField("CN")[0]
        }" (subject "localhost"), but the trusted CA bundle holds "OneConnect Dev CA", not "${
          foreignCa.cert.subjectName.getField("CN")[0]
        }", which issued it: give the CA certificate of "${
          foreignCa.cert.subjectName.getField("CN")[0]
        }"`,
      );
      assert.equal(platform.requestCount, before, "nothing may reach the platform");
      assert.equal(platform.heartbeats(agentId).length, 1);
    });

    assert.ok(
      platform.heartbeats().every((r) => r.auth !== "mtls" || !r.had_authorization),
      "an mTLS heartbeat carried an Authorization header",
    );
    assert.deepEqual(platform.contractViolations, []);
  },
});
