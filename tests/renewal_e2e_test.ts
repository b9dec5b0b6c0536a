/**
 * Certificate renewal end to end: the real CLI against the dev platform with short-lived
 * certificates (60 s TTL, backdated 60 s by the platform: a 120 s lifetime, renewed 72..88 s after
 * its start, i.e. 12..28 s after issue), in mTLS mode through a real nginx.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  certificateFingerprint,
  enrollAgent,
  logLines,
  runAgent,
  skipWithout,
  startRun,
  tempDir,
  until,
} from "./_support/helpers.ts";
import { NGINX_BIN, nginxAvailable, startNginxFor } from "./_support/nginx.ts";

const HAVE_NGINX = nginxAvailable();
const PROXY_SECRET = "renewal-e2e-proxy-secret";

interface StoredIdentity {
  agent_id: string;
  certificate: string;
  private_key: string;
  certificate_not_after: string;
}

async function readIdentity(stateDir: string): Promise<StoredIdentity> {
  return JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
}

async function readStatusFile(stateDir: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
  } catch {
    return null;
  }
}

Deno.test({
  name: "run renews its certificate and heartbeats present only the new one through nginx mTLS",
  ignore: skipWithout(HAVE_NGINX),
  async fn() {
    if (!HAVE_NGINX) throw new Error(`CI requires every tool, but ${NGINX_BIN} is missing`);
    await using platform = await startDevPlatform({
      quiet: true,
      certTtlSeconds: 60,
      requireMtls: true,
      proxySecret: PROXY_SECRET,
    });
    await using nginx = await startNginxFor(platform, PROXY_SECRET);
    await using dir = await tempDir();
    const agentId = await enrollAgent(platform, dir.path, nginx.url);
    const first = await certificateFingerprint((await readIdentity(dir.path)).certificate);
    const agent = () => platform.agents().find((a) => a.agent_id === agentId)!;
    const prints = () => platform.heartbeats(agentId).map((h) => h.client_cert_fingerprint);

    let stderr: string;
    {
      await using run = startRun(dir.path, ["--interval", "1", "--auth", "mtls"]);
      await until(() => agent().renewal_count >= 1, "a renewal inside run", 120_000);
      const renewedAt = prints().length;
      await until(
        () => prints().length >= renewedAt + 3,
        "three heartbeats after the renewal",
        60_000,
      );
      const end = await run.terminate();
      assert.equal(end.code, 0, `${end.stderr}\n${await nginx.errorLog()}`);
      stderr = end.stderr;
    }

    const seen = prints();
    assert.ok(seen.every((p) => typeof p === "string"), "every heartbeat came with a certificate");
    assert.equal(seen[0], first);
    // Each certificate is presented in one unbroken run of heartbeats: once a newer one has been
    // presented, an older one never comes back.
    const order = seen.filter((p, i) => i === 0 || seen[i - 1] !== p);
    assert.equal(new Set(order).size, order.length, `a certificate came back: ${order}`);
    assert.ok(order.length >= 2, "the renewed certificate was presented");
    assert.ok(seen.length - 1 - seen.lastIndexOf(first) >= 3, "three heartbeats after the old one");

    // It presents what it stored: the newest certificate, unless a renewal came after the last
    // heartbeat (then the platform issued one more than was presented).
    const stored = await readIdentity(dir.path);
    const storedPrint = await certificateFingerprint(stored.certificate);
    const renewals = agent().renewal_count;
    if (order.at(-1) === storedPrint) assert.equal(renewals, order.length - 1);
    else assert.equal(renewals, order.length, `${storedPrint} never presented`);

    const logs = logLines(stderr);
    const renewedLogs = logs.filter((l) => l.msg === "Certificate renewed");
    assert.equal(renewedLogs.length, agent().renewal_count, stderr);
    // The only warnings: at start, the 60 s certificate expires within the warning window; and,
    // on a busy host, a heartbeat that timed out or met a 502/503/504 (load, not the certificate:
    // a TLS, 401 or 403 failure, or an expired certificate, is never tolerated).
    const warnings = logs.filter((l) => l.level === "warn" || l.level === "error");
    const transient = (msg: string) =>
      /^Heartbeats failing since \S+: .*(timed out|platform answered 50[234])/.test(msg) &&
      !/certificate|TLS|handshake/i.test(msg);
    assert.ok(
      warnings.every((l) =>
        /^Agent certificate expires at /.test(String(l.msg)) || transient(String(l.msg))
      ),
      stderr,
    );
    const status = await readStatusFile(dir.path);
    if (!warnings.some((l) => transient(String(l.msg)))) {
      assert.equal(status?.consecutive_failures, 0);
    }
    const renewal = status?.renewal as Record<string, unknown>;
    assert.equal(renewal.last_error, null);
    assert.equal(typeof renewal.last_renewed_at, "string");
    assert.equal(status?.certificate_expires_at, stored.certificate_not_after);
    assert.deepEqual(platform.contractViolations, []);
  },
});

Deno.test("a failing renewal keeps the old identity while heartbeats continue, then it recovers", async () => {
  await using platform = await startDevPlatform({ quiet: true, certTtlSeconds: 60 });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);
  const before = await Deno.readTextFile(join(dir.path, "identity.json"));
  const agent = () => platform.agents().find((a) => a.agent_id === agentId)!;
  const beats = () => platform.heartbeats(agentId).length;
  platform.injectFault({ route: "renew", status: 503 });

  await using run = startRun(dir.path, ["--interval", "1"]);
  await until(
    async () => {
      const renewal = (await readStatusFile(dir.path))?.renewal as Record<string, unknown> | null;
      return typeof renewal?.last_error === "string";
    },
    "a failed renewal in status.json",
    60_000,
  );
  const failedAt = beats();
  await until(() => beats() >= failedAt + 3, "three heartbeats after the failed renewal", 60_000);
  assert.equal(await Deno.readTextFile(join(dir.path, "identity.json")), before);
  assert.equal(agent().renewal_count, 0);
  const status = await readStatusFile(dir.path);
  assert.equal(status?.consecutive_failures, 0);
  assert.match(
    String((status?.renewal as Record<string, unknown>).last_error),
    /^Cannot renew certificate: platform answered 503/,
  );

  // The platform recovers: the retry (with backoff) renews, and heartbeats go on.
  platform.clearFaults();
  await until(() => agent().renewal_count >= 1, "the retried renewal", 60_000);
  const renewedAt = beats();
  await until(() => beats() >= renewedAt + 2, "heartbeats after the renewal", 60_000);
  const end = await run.terminate();
  assert.equal(end.code, 0, end.stderr);
  assert.notEqual(await Deno.readTextFile(join(dir.path, "identity.json")), before);
  const warnings = logLines(end.stderr).filter((l) => l.level === "warn").map((l) => l.msg)
    .filter((m) => !/^Agent certificate expires at /.test(String(m)));
  assert.ok(warnings.length >= 1, end.stderr);
  assert.ok(
    warnings.every((m) =>
      /^Cannot renew certificate: platform answered 503.*keeping the current certificate/.test(
        String(m),
      )
    ),
    end.stderr,
  );
  const final = await readStatusFile(dir.path);
  assert.equal((final?.renewal as Record<string, unknown>).last_error, null);
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("renew forces a renewal now; it exits 4 on a platform failure and 3 once revoked", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);
  const before = await readIdentity(dir.path);

  const ok = await runAgent(["--state-dir", dir.path, "renew"]);
  assert.equal(ok.code, 0, ok.stderr);
  const after = await readIdentity(dir.path);
  assert.notEqual(after.certificate, before.certificate);
  assert.notEqual(after.private_key, before.private_key);
  assert.equal(
    ok.stdout,
    `renewed the certificate of ${agentId}; valid until ${after.certificate_not_after}\n`,
  );
  assert.equal(platform.agents()[0]?.renewal_count, 1);
  const beat = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(beat.code, 0, beat.stderr);

  const status = await runAgent(["--state-dir", dir.path, "status"]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^Certificate: +expires /m);
  assert.match(status.stdout, /^Renewal: +next \d{4}-/m);
  assert.match(status.stdout, /^Last renewal: +\d{4}-/m);

  platform.injectFault({ route: "renew", status: 503, times: 1 });
  const failed = await runAgent(["--state-dir", dir.path, "renew"]);
  assert.equal(failed.code, 4, failed.stderr);
  assert.match(failed.stderr, /^error: Cannot renew certificate: platform answered 503/m);
  assert.deepEqual(await readIdentity(dir.path), after);
  const failedStatus = await runAgent(["--state-dir", dir.path, "status"]);
  assert.match(
    failedStatus.stdout,
    /^Renewal error: +Cannot renew certificate: platform answered 503/m,
  );

  platform.revokeCredential(agentId);
  const revoked = await runAgent(["--state-dir", dir.path, "renew"]);
  assert.equal(revoked.code, 3, revoked.stderr);
  assert.match(
    revoked.stderr,
    /^error: Cannot renew certificate: platform answered 401 credential_revoked.*re-enroll/m,
  );
  assert.deepEqual(await readIdentity(dir.path), after);
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("renew stores a rotated service account token and heartbeats use it", async () => {
  await using platform = await startDevPlatform({
    quiet: true,
    rotateServiceAccountTokenOnRenew: true,
  });
  await using dir = await tempDir();
  const agentId = await enrollAgent(platform, dir.path);
  const tokenOf = async () =>
    (JSON.parse(await Deno.readTextFile(join(dir.path, "identity.json"))) as {
      service_account_token: string;
    }).service_account_token;
  const before = await tokenOf();
  const renewed = await runAgent(["--state-dir", dir.path, "renew"]);
  assert.equal(renewed.code, 0, renewed.stderr);
  const after = await tokenOf();
  assert.notEqual(after, before);
  assert.ok(!renewed.stdout.includes(after) && !renewed.stderr.includes(after));
  const beat = await runAgent(["--state-dir", dir.path, "run", "--once"]);
  assert.equal(beat.code, 0, beat.stderr);
  assert.equal(platform.heartbeats(agentId).at(-1)?.auth, "bearer");
  assert.deepEqual(platform.contractViolations, []);
});
