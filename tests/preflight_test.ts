import assert from "node:assert/strict";
import { join } from "node:path";
import type { HealthResponse } from "../src/wire/contract.ts";
import { AgentError, UsageError } from "../src/errors.ts";
import {
  formatChecks,
  type PreflightCheck,
  type PreflightTarget,
  runPreflight,
} from "../src/enrollment/preflight.ts";
import type { PreflightNetwork } from "../src/enrollment/preflight_network.ts";
import { preflightCommand } from "../src/commands/preflight.ts";
import { createDevCa, startDevPlatform } from "../tasks/dev_platform/server.ts";
import { runAgent, tempDir } from "./_support/helpers.ts";
import { testContext } from "./_support/context_fixture.ts";

const WALL = Date.parse("2026-03-01T12:00:00.000Z");

interface FakeOptions {
  addresses?: string[] | Error;
  tcp?: Error | "hang";
  tls?: Error;
  health?: Error | { body: HealthResponse; date: string | null };
  /** Milliseconds each health round trip takes on the fake monotonic clock. */
  roundTripMs?: number;
}

/** A scripted network that records every call. */
function fakeNet(opts: FakeOptions = {}) {
  const calls: string[] = [];
  let mono = 1000;
  const net: PreflightNetwork = {
    resolve: (hostname) => {
      calls.push(`resolve ${hostname}`);
      const a = opts.addresses ?? ["192.0.2.10"];
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
    },
    connectTcp: (hostname, port, signal) => {
      calls.push(`tcp ${hostname}:${port}`);
      if (opts.tcp === "hang") {
        return new Promise((_, reject) =>
          signal.addEventListener("abort", () => reject(new Error("timed out")))
        );
      }
      mono += 3;
      return opts.tcp ? Promise.reject(opts.tcp) : Promise.resolve();
    },
    handshakeTls: (hostname, port, caCerts) => {
      calls.push(`tls ${hostname}:${port} pins=${caCerts?.length ?? "system"}`);
      return opts.tls ? Promise.reject(opts.tls) : Promise.resolve();
    },
    health: () => {
      calls.push("health");
      mono += opts.roundTripMs ?? 20;
      const h = opts.health ?? {
        body: { status: "ok", time: new Date(WALL + (opts.roundTripMs ?? 20) / 2).toISOString() },
        date: null,
      };
      return h instanceof Error ? Promise.reject(h) : Promise.resolve(h);
    },
    monotonicMs: () => mono,
    wallMs: () => WALL,
  };
  return { net, calls };
}

function target(url: string, extra: Partial<PreflightTarget> = {}): PreflightTarget {
  return { url: new URL(url), timeoutMs: 200, ...extra };
}

const summary = (checks: PreflightCheck[]) => checks.map((c) => `${c.status} ${c.name}`);

function skewed(seconds: number): FakeOptions {
  return {
    roundTripMs: 0,
    health: {
      body: { status: "ok", time: new Date(WALL + seconds * 1000).toISOString() },
      date: null,
    },
  };
}

Deno.test("preflight passes every check against a healthy platform", async () => {
  const { net, calls } = fakeNet();
  const checks = await runPreflight(
    target("https://platform.example.com:8443/", { caCerts: ["a", "b"] }),
    net,
  );
  assert.deepEqual(summary(checks), ["ok dns", "ok tcp", "ok tls", "ok health", "ok clock"]);
  assert.deepEqual(calls, [
    "resolve platform.example.com",
    "tcp platform.example.com:8443",
    "tls platform.example.com:8443 pins=2",
    "health",
  ]);
  assert.equal(checks[0]!.detail, "platform.example.com resolves to 192.0.2.10");
  assert.equal(checks[1]!.detail, "connected to platform.example.com:8443 in 3 ms");
  assert.equal(
    checks[2]!.detail,
    "certificate of platform.example.com:8443 verified against the CA file (2 certificates)",
  );
  assert.equal(checks[3]!.detail, 'GET api/v1/health answered status "ok" in 20 ms');
  assert.equal(checks[4]!.detail, "platform clock (its time) agrees with this host");
});

Deno.test("preflight skips DNS for an IP address and uses port 443 by default", async () => {
  const { net, calls } = fakeNet();
  const checks = await runPreflight(target("https://[::1]/"), net);
  assert.deepEqual(summary(checks), ["skip dns", "ok tcp", "ok tls", "ok health", "ok clock"]);
  assert.equal(checks[0]!.detail, "::1 is an IP address");
  assert.deepEqual(calls.slice(0, 2), ["tcp ::1:443", "tls ::1:443 pins=system"]);
  assert.match(checks[2]!.detail, /verified against the operating system's trust store$/);
});

Deno.test("preflight reports a DNS failure and skips what depends on it", async () => {
  for (const addresses of [new Error("getaddrinfo ENOTFOUND nowhere.example"), []]) {
    const { net, calls } = fakeNet({ addresses });
    const checks = await runPreflight(target("https://nowhere.example/"), net);
    assert.deepEqual(summary(checks), [
      "fail dns",
      "skip tcp",
      "skip tls",
      "skip health",
      "skip clock",
    ]);
    assert.match(
      checks[0]!.detail,
      /^cannot resolve nowhere\.example: (getaddrinfo ENOTFOUND nowhere\.example|no address)$/,
    );
    assert.equal(checks[1]!.detail, "skipped: name resolution failed");
    assert.deepEqual(calls, ["resolve nowhere.example"]);
  }
});

Deno.test("preflight reports a refused or timed-out TCP connection", async () => {
  {
    const { net } = fakeNet({ tcp: new Error("Connection refused (os error 111)") });
    const checks = await runPreflight(target("https://127.0.0.1:9/"), net);
    assert.deepEqual(summary(checks), [
      "skip dns",
      "fail tcp",
      "skip tls",
      "skip health",
      "skip clock",
    ]);
    assert.equal(
      checks[1]!.detail,
      "cannot connect to 127.0.0.1:9: Connection refused (os error 111)",
    );
  }
  {
    const { net } = fakeNet({ tcp: "hang" });
    const checks = await runPreflight(target("https://127.0.0.1:9/", { timeoutMs: 30 }), net);
    assert.equal(checks[1]!.detail, "cannot connect to 127.0.0.1:9: timed out");
  }
});

Deno.test("preflight through a proxy resolves and dials the proxy and leaves TLS to health", async () => {
  const { net, calls } = fakeNet();
  const checks = await runPreflight(
    target("https://platform.example.com/", { proxy: new URL("http://proxy.corp:3128") }),
    net,
  );
  assert.deepEqual(summary(checks), ["ok dns", "ok proxy", "skip tls", "ok health", "ok clock"]);
  assert.deepEqual(calls, ["resolve proxy.corp", "tcp proxy.corp:3128", "health"]);
  assert.equal(checks[0]!.detail, "proxy host proxy.corp resolves to 192.0.2.10");
  assert.equal(checks[1]!.detail, "connected to proxy proxy.corp:3128 in 3 ms");
  assert.equal(
    checks[2]!.detail,
    "checked against the operating system's trust store through the proxy by the health check",
  );

  const refused = fakeNet({ tcp: new Error("Connection refused") });
  const failed = await runPreflight(
    target("https://platform.example.com/", { proxy: new URL("http://proxy.corp:3128") }),
    refused.net,
  );
  assert.deepEqual(summary(failed).slice(0, 2), ["ok dns", "fail proxy"]);
  assert.equal(failed[1]!.detail, "cannot connect to proxy proxy.corp:3128: Connection refused");
});

Deno.test("preflight reports a TLS chain the pin does not accept", async () => {
  const { net, calls } = fakeNet({ tls: new Error("invalid peer certificate: UnknownIssuer") });
  const checks = await runPreflight(target("https://127.0.0.1:8443/", { caCerts: ["x"] }), net);
  assert.deepEqual(summary(checks), [
    "skip dns",
    "ok tcp",
    "fail tls",
    "skip health",
    "skip clock",
  ]);
  assert.equal(
    checks[2]!.detail,
    "certificate of 127.0.0.1:8443 not accepted with the CA file (1 certificate): invalid peer certificate: UnknownIssuer",
  );
  assert.ok(!calls.includes("health"));
});

Deno.test("preflight skips TLS for plain http on loopback", async () => {
  const { net, calls } = fakeNet();
  const checks = await runPreflight(target("http://127.0.0.1:8080/"), net);
  assert.deepEqual(summary(checks), ["skip dns", "ok tcp", "skip tls", "ok health", "ok clock"]);
  assert.equal(checks[2]!.detail, "plain http (loopback only)");
  assert.ok(!calls.some((c) => c.startsWith("tls")));
});

Deno.test("preflight reports a failing health call and skips the clock", async () => {
  const { net } = fakeNet({ health: new Error("platform answered 503: maintenance") });
  const checks = await runPreflight(target("https://127.0.0.1:8443/"), net);
  assert.deepEqual(summary(checks).slice(3), ["fail health", "skip clock"]);
  assert.equal(checks[3]!.detail, "platform answered 503: maintenance");
  assert.equal(checks[4]!.detail, "skipped: no answer from the platform");
});

Deno.test("preflight clock skew: ok up to 60 s, a warning above, as enroll gives", async () => {
  const hint =
    "more than 60 s: certificates may look not yet valid or expired: fix time sync \\(NTP\\) on this host$";
  const cases: Array<[number, string, RegExp]> = [
    [45, "ok", /^platform clock \(its time\) is 45 s ahead of this host$/],
    [-60, "ok", /is 60 s behind this host$/],
    [61, "warn", new RegExp(`is 61 s ahead of this host, ${hint}`)],
    [-300, "warn", /is 300 s behind/],
    [301, "warn", new RegExp(`is 301 s ahead of this host, ${hint}`)],
    [-600, "warn", new RegExp(`is 600 s behind this host, ${hint}`)],
  ];
  for (const [seconds, status, detail] of cases) {
    const { net } = fakeNet(skewed(seconds));
    const clock = (await runPreflight(target("https://127.0.0.1:1/"), net)).at(-1)!;
    assert.equal(clock.name, "clock");
    assert.equal(clock.status, status, `${seconds} s`);
    assert.match(clock.detail, detail);
  }
});

Deno.test("preflight fails the clock, not only TLS, when the certificate's dates refuse it", async () => {
  const { net } = fakeNet({
    tls: new Error(
      "certificate is not valid yet (valid from 2026-12-05T21:48:22Z); check this host's clock (NotValidYet)",
    ),
  });
  const checks = await runPreflight(target("https://127.0.0.1:1/"), net);
  assert.deepEqual(summary(checks), [
    "skip dns",
    "ok tcp",
    "fail tls",
    "skip health",
    "fail clock",
  ]);
  assert.match(
    checks.at(-1)!.detail,
    /^this host's clock reads \S+, outside the platform certificate's validity: certificates may look/,
  );
});

Deno.test("preflight compares the platform time with the middle of the round trip", async () => {
  // Sent at WALL, answered 4 s later: a platform stamping WALL+2s has the same clock as ours.
  const { net } = fakeNet({
    roundTripMs: 4000,
    health: { body: { status: "ok", time: new Date(WALL + 2000).toISOString() }, date: null },
  });
  const checks = await runPreflight(target("https://127.0.0.1:1/"), net);
  assert.equal(checks.at(-1)!.detail, "platform clock (its time) agrees with this host");
});

Deno.test("preflight falls back to the Date header, and skips the clock without any time", async () => {
  const date = new Date(WALL + 120_000).toUTCString();
  const withDate = fakeNet({
    roundTripMs: 0,
    health: { body: { status: "ok", time: "not a time" }, date },
  });
  const a = (await runPreflight(target("https://127.0.0.1:1/"), withDate.net)).at(-1)!;
  assert.equal(a.status, "warn");
  assert.match(a.detail, /^platform clock \(its Date header\) is 120 s ahead/);

  const none = fakeNet({ health: { body: { status: "ok", time: "garbage" }, date: null } });
  const b = (await runPreflight(target("https://127.0.0.1:1/"), none.net)).at(-1)!;
  assert.deepEqual(b, {
    name: "clock",
    status: "skip",
    detail: "the platform sent no usable time",
  });
});

Deno.test("formatChecks prints one aligned line per check", () => {
  assert.equal(
    formatChecks([
      { name: "dns", status: "skip", detail: "127.0.0.1 is an IP address" },
      { name: "clock", status: "fail", detail: "bad" },
    ]),
    "skip  dns    127.0.0.1 is an IP address\nfail  clock  bad\n",
  );
});

function context(
  platformUrl: string | undefined,
  caFile?: string,
): ReturnType<typeof testContext> {
  return testContext("/nonexistent/state", {
    config: {
      platformUrl: platformUrl === undefined ? undefined : new URL(platformUrl),
      caFile,
    },
    stdin: () => {
      throw new Error("preflight must not read stdin (the token may be there)");
    },
  });
}

Deno.test("preflightCommand prints the checks and fails with exit 4 naming the failed ones", async () => {
  {
    const { ctx, out } = context("https://127.0.0.1:1/");
    await preflightCommand(ctx, { timeoutSeconds: 120 }, () => fakeNet().net);
    assert.equal(out.length, 1);
    // The proxy decision first, then the five checks (and the final newline).
    assert.equal(out[0]!.split("\n").length, 7);
    assert.match(out[0]!, /^ok {4}route {2}direct \(from no proxy configured\)$/m);
  }
  {
    const { ctx, out } = context("https://127.0.0.1:1/");
    const expired = fakeNet({ tls: new Error("certificate expired (Expired)") }).net;
    const e = await preflightCommand(ctx, { timeoutSeconds: 120 }, () => expired)
      .then(() => null, (e) => e);
    assert.ok(e instanceof AgentError);
    assert.equal(e.exitCode, 4);
    assert.equal(
      e.message,
      "Preflight failed: tls, clock; nothing was enrolled and no enrollment token was used",
    );
    assert.match(out[0]!, /^fail {2}clock {2}this host's clock reads /m);
  }
  {
    const { ctx } = context(undefined);
    const e = await preflightCommand(ctx, { timeoutSeconds: 120 }).then(() => null, (e) => e);
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /^Cannot check: no platform URL; pass --url/);
  }
  {
    await using dir = await tempDir();
    const bad = join(dir.path, "ca.pem");
    await Deno.writeTextFile(bad, "not a certificate\n");
    const { ctx } = context("https://127.0.0.1:1/", bad);
    const e = await preflightCommand(ctx, { timeoutSeconds: 120 }).then(() => null, (e) => e);
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /^Invalid CA file ".*ca\.pem": no PEM certificate/);
  }
});

// End to end: the real CLI against the dev platform.

function checkLines(stdout: string): string[] {
  return stdout.trimEnd().split("\n").map((l) => l.split(/\s+/).slice(0, 2).join(" "));
}

Deno.test("enroll --check passes against the dev platform without reading a token", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const result = await runAgent([
    "--state-dir",
    stateDir,
    "enroll",
    "--check",
    "--url",
    platform.url.href,
    "--ca-file",
    platform.caFile,
    // A token file that does not exist: reading it would fail the command.
    "--token-file",
    join(dir.path, "no-such-token"),
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  assert.deepEqual(checkLines(result.stdout), [
    "ok route",
    "skip dns",
    "ok tcp",
    "ok tls",
    "ok health",
    "ok clock",
  ]);
  assert.match(result.stdout, /^ok +clock +platform clock \(its time\) (agrees|is [01] s)/m);
  assert.deepEqual(platform.agents(), []);
  // Nothing is written either: no state directory appears.
  assert.equal(await Deno.lstat(stateDir).then(() => true, () => false), false);
  assert.deepEqual(platform.contractViolations, []);
});

Deno.test("enroll --check warns on a 10-minute clock skew, as enroll does, which then succeeds", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "state");
  await using platform = await startDevPlatform({ quiet: true, clockOffsetSeconds: 600 });
  const target = ["enroll", "--url", platform.url.href, "--ca-file", platform.caFile];
  const check = await runAgent(["--state-dir", stateDir, ...target, "--check"]);
  assert.equal(check.code, 0, check.stderr);
  assert.deepEqual(checkLines(check.stdout), [
    "ok route",
    "skip dns",
    "ok tcp",
    "ok tls",
    "ok health",
    "warn clock",
  ]);
  assert.match(
    check.stdout,
    /^warn +clock +platform clock \(its time\) is (599|600|601) s ahead of this host, more than 60 s: certificates may look not yet valid or expired: fix time sync \(NTP\) on this host$/m,
  );
  const enroll = await runAgent(["--state-dir", stateDir, ...target], {
    env: { ONECONNECT_ENROLLMENT_TOKEN: platform.mintEnrollmentToken() },
  });
  assert.equal(enroll.code, 0, enroll.stderr);
  assert.match(enroll.stdout, /^enrolled as /);
  assert.match(
    enroll.stderr,
    /WARN +The platform's clock is 10 min ahead of this host; certificates may look not yet valid or expired: fix time sync \(NTP\) on this host/,
  );
});

Deno.test("enroll --check with the wrong CA file fails the TLS check", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const foreign = await createDevCa({ commonName: "Some Other CA" });
  const caFile = join(dir.path, "other-ca.pem");
  await Deno.writeTextFile(caFile, foreign.certPem);
  const result = await runAgent([
    "--state-dir",
    join(dir.path, "state"),
    "enroll",
    "--check",
    "--url",
    platform.url.href,
    "--ca-file",
    caFile,
  ]);
  assert.equal(result.code, 4, result.stderr);
  assert.deepEqual(checkLines(result.stdout), [
    "ok route",
    "skip dns",
    "ok tcp",
    "fail tls",
    "skip health",
    "skip clock",
  ]);
  assert.match(
    result.stdout,
    /^fail +tls +certificate of 127\.0\.0\.1:\d+ not accepted with the CA file \(1 certificate\): certificate issued by "OneConnect Dev CA" \(subject "localhost"\), but the CA file holds "Some Other CA", not "OneConnect Dev CA", which issued it: give the CA certificate of "OneConnect Dev CA"$/m,
  );
  assert.equal(
    result.stderr,
    "error: Preflight failed: tls; nothing was enrolled and no enrollment token was used\n",
  );
});

Deno.test("enroll --check reports a port nobody listens on", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  await using dir = await tempDir();
  const result = await runAgent([
    "--state-dir",
    join(dir.path, "state"),
    "enroll",
    "--check",
    "--url",
    `https://127.0.0.1:${port}/`,
  ]);
  assert.equal(result.code, 4, result.stderr);
  assert.deepEqual(checkLines(result.stdout), [
    "ok route",
    "skip dns",
    "fail tcp",
    "skip tls",
    "skip health",
    "skip clock",
  ]);
  assert.match(
    result.stdout,
    new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}: .*refused`, "i"),
  );
});
