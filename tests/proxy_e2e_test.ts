/**
 * Proxies end to end, against parts this project did not write: Debian's squid (open and with
 * Basic authentication by squid's own helper), a PAC file served locally or read from disk, and a
 * plain-http platform with every proxy variable pointing at a recording listener.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  enrollArgs,
  freePort,
  hostPort,
  MAIN,
  runAgent,
  skipWithout,
  startRun,
  tempDir,
  until,
} from "./_support/helpers.ts";
import { agentRunFlags } from "../tasks/permissions.ts";
import { squidAvailable, startSquid } from "./_support/squid.ts";
import { rawHttpServer, type RawStep } from "./_support/raw_http.ts";

const NO_SQUID = !squidAvailable();

/** A TCP listener that records every connection and answers nothing (a proxy that must not be used). */
function recordingListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  const accepted: Deno.Conn[] = [];
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        connections++;
        accepted.push(conn);
      }
    } catch {
      // listener closed
    }
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get connections() {
      return connections;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of accepted) {
        try {
          conn.close();
        } catch {
          // closed by the peer
        }
      }
      await loop;
    },
  };
}

/** Serves `script` as a PAC file at `/proxy.pac`. */
function servePac(script: string) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) =>
      new URL(req.url).pathname === "/proxy.pac"
        ? new Response(script, { headers: { "content-type": "application/x-ns-proxy-autoconfig" } })
        : new Response("not found", { status: 404 }),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/proxy.pac`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** CONNECT lines of squid's access log that reached `target` (`host:port`). */
function connects(log: string, target: string): string[] {
  return log.split("\n").filter((line) => line.includes(` CONNECT ${target} `));
}

/** `enroll --url <platform> --ca-file <its CA> <extra> --token-file -` with a fresh token. */
function enrollWith(
  platform: { url: URL; caFile: string; mintEnrollmentToken(): string },
  stateDir: string,
  extra: string[] = [],
  globals: string[] = [],
) {
  return runAgent([
    "--state-dir",
    stateDir,
    ...globals,
    "enroll",
    "--url",
    platform.url.href,
    "--ca-file",
    platform.caFile,
    ...extra,
    "--token-file",
    "-",
  ], { stdin: platform.mintEnrollmentToken() });
}

Deno.test("a plain http platform is never reached through HTTP_PROXY, http_proxy or ALL_PROXY", async () => {
  await using platform = await startDevPlatform({ quiet: true, insecureHttp: true });
  await using proxy = recordingListener();
  await using dir = await tempDir();
  const env = {
    // The deno CLI (not the agent) checks for upgrades through these proxies.
    DENO_NO_UPDATE_CHECK: "1",
    HTTP_PROXY: proxy.url,
    http_proxy: proxy.url,
    ALL_PROXY: proxy.url,
    all_proxy: proxy.url,
    HTTPS_PROXY: proxy.url,
  };
  const enroll = await runAgent(
    [
      "--state-dir",
      dir.path,
      ...enrollArgs({ url: platform.url }, "--timeout", "5", "--token-file", "-"),
    ],
    { env, stdin: platform.mintEnrollmentToken() },
  );
  assert.equal(enroll.code, 0, enroll.stderr);
  const agentId = JSON.parse(await Deno.readTextFile(join(dir.path, "identity.json"))).agent_id;

  const run = await runAgent(["--state-dir", dir.path, "run", "--once"], { env });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(platform.heartbeats(agentId).length, 1);

  const check = await runAgent(
    ["--state-dir", dir.path, "enroll", "--check", "--url", platform.url.href],
    { env },
  );
  assert.equal(check.code, 0, check.stderr);
  assert.match(
    check.stdout,
    /^ok +route +direct \(from plain http:\/\/ \(loopback only\) is never proxied\)$/m,
  );
  assert.equal(proxy.connections, 0, "the proxy was contacted");
});

Deno.test({
  name: "a PAC served over http routes enroll, --check and run through a real squid",
  ignore: skipWithout(!NO_SQUID),
  async fn() {
    await using squid = await startSquid();
    await using platform = await startDevPlatform({ quiet: true });
    const squidHost = hostPort(squid.url);
    await using pac = servePac(`
      function FindProxyForURL(url, host) {
        if (isPlainHostName(host) || dnsDomainIs(host, ".example.invalid")) return "DIRECT";
        if (isInNet(dnsResolve(host), "127.0.0.0", "255.0.0.0") && shExpMatch(url, "https://*")) {
          return "PROXY ${squidHost}";
        }
        return "DIRECT";
      }`);
    await using dir = await tempDir();
    const target = hostPort(platform.url);

    const check = await runAgent([
      "--state-dir",
      dir.path,
      ...enrollArgs(platform, "--check", "--proxy-pac", pac.url),
    ]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(
      check.stdout,
      new RegExp(`^ok +route +http://${squidHost} \\(from PAC "${pac.url}"\\)$`, "m"),
    );

    const enroll = await enrollWith(platform, dir.path, ["--proxy-pac", pac.url]);
    assert.equal(enroll.code, 0, enroll.stderr);
    const afterEnroll = connects(await squid.accessLog(), target).length;
    assert.ok(afterEnroll >= 2, `squid saw ${afterEnroll} CONNECTs to ${target}`);

    const run = await runAgent(["--state-dir", dir.path, "run", "--once"], {
      env: { ONECONNECT_PROXY_PAC: pac.url },
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(platform.agents().length, 1);
    // squid logs a CONNECT when its tunnel closes, which on a loaded machine can come a moment
    // after the agent exited.
    await until(
      async () => connects(await squid.accessLog(), target).length > afterEnroll,
      `run's CONNECT in squid's log (run bypassed squid?) stderr: ${run.stderr}`,
      10_000,
    );
  },
});

Deno.test({
  name: "a PAC file whose first proxy is dead fails over to the second (squid)",
  ignore: skipWithout(!NO_SQUID),
  async fn() {
    await using squid = await startSquid();
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir();
    const deadPort = freePort();
    const pacFile = join(dir.path, "proxy.pac");
    await Deno.writeTextFile(
      pacFile,
      `function FindProxyForURL(url, host) {
        return "PROXY 127.0.0.1:${deadPort}; PROXY ${hostPort(squid.url)}; DIRECT";
      }`,
    );
    await Deno.writeTextFile(
      join(dir.path, "agent.json"),
      JSON.stringify({ proxy_pac_url: pacFile }),
    );
    await Deno.chmod(join(dir.path, "agent.json"), 0o600);
    const enroll = await enrollWith(platform, dir.path);
    assert.equal(enroll.code, 0, enroll.stderr);
    assert.match(
      enroll.stderr,
      new RegExp(`127\\.0\\.0\\.1:${deadPort}.*connection refused; trying the next proxy`),
    );

    const run = await runAgent(["--state-dir", dir.path, "run", "--once"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /trying the next proxy/);
    assert.ok(connects(await squid.accessLog(), hostPort(platform.url)).length >= 2);
  },
});

Deno.test({
  name: "proxy_url with Basic credentials authenticates to squid and never shows them",
  ignore: skipWithout(!NO_SQUID),
  async fn() {
    await using squid = await startSquid();
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir();
    const { username, password } = squid.credentials;
    const proxyUrl = `http://${username}:${password}@${hostPort(squid.authUrl)}`;
    await Deno.writeTextFile(join(dir.path, "agent.json"), JSON.stringify({ proxy_url: proxyUrl }));
    await Deno.chmod(join(dir.path, "agent.json"), 0o600);
    const enroll = await enrollWith(platform, dir.path, [], ["--log-level", "debug"]);
    assert.equal(enroll.code, 0, enroll.stderr);
    assert.ok(!enroll.stderr.includes(password));
    const log = await squid.accessLog();
    assert.ok(
      connects(log, hostPort(platform.url)).some((l) => l.includes(` ${username} `)),
      log,
    );
  },
});

Deno.test("run warns once about a platform clock 10 min behind and status shows the offset", async () => {
  await using platform = await startDevPlatform({ quiet: true, clockOffsetSeconds: -600 });
  await using dir = await tempDir();
  const enroll = await enrollWith(platform, dir.path);
  assert.equal(enroll.code, 0, enroll.stderr);
  const agentId = JSON.parse(await Deno.readTextFile(join(dir.path, "identity.json"))).agent_id;

  await using run = startRun(dir.path, ["--interval", "1"]);
  await until(() => platform.heartbeats(agentId).length >= 3, "three heartbeats");
  const { code, stderr } = await run.terminate();
  assert.equal(code, 0, stderr);
  const warnings = stderr.split("\n").filter((l) => l.includes("platform's clock"));
  assert.equal(warnings.length, 1, stderr);
  assert.match(warnings[0]!, /is 10 min behind this host/);

  const json = await runAgent(["--state-dir", dir.path, "status", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const offset = JSON.parse(json.stdout).clock_offset;
  assert.ok(Math.abs(offset.seconds + 600) <= 2, JSON.stringify(offset));
  const text = await runAgent(["--state-dir", dir.path, "status"]);
  assert.match(
    text.stdout,
    /^Clock offset: +-(599|600|601) s: the platform's clock is 10 min behind this host/m,
  );
});

Deno.test("enroll accepts a certificate valid by the platform's measured clock, warning about the offset", async () => {
  // Not yet valid by this host's clock (the platform is 10 min ahead): refusing it would spend
  // the token for nothing, and enroll --check only warns about the same offset.
  await using platform = await startDevPlatform({ quiet: true, clockOffsetSeconds: 600 });
  await using dir = await tempDir();
  const enroll = await enrollWith(platform, dir.path);
  assert.equal(enroll.code, 0, enroll.stderr);
  assert.match(
    enroll.stderr,
    /WARN +The platform's clock is 10 min ahead of this host; certificates may look not yet valid or expired/,
  );
});

Deno.test("without permission to pin NO_PROXY the agent fails closed instead of following the environment", async () => {
  await using platform = await startDevPlatform({ quiet: true, insecureHttp: true });
  await using dir = await tempDir();
  const enroll = await runAgent(
    ["--state-dir", dir.path, "enroll", "--url", platform.url.href, "--token-file", "-"],
    { stdin: platform.mintEnrollmentToken() },
  );
  assert.equal(enroll.code, 0, enroll.stderr);
  const flags = (await agentRunFlags()).map((f) =>
    f.startsWith("--allow-env=") ? f.replace(/(^|,)NO_PROXY(?=,|$)/, "") : f
  );
  const run = await runAgent(["--state-dir", dir.path, "run", "--once"], {
    permissions: flags,
    env: { DENO_NO_UPDATE_CHECK: "1" },
  });
  assert.equal(run.code, 4, run.stderr);
  assert.match(run.stderr, /NO_PROXY is not in --allow-env/);
  assert.equal(platform.heartbeats().length, 0);
});

Deno.test("a hostile PAC prints nothing into the agent's output, cannot crash it, and leaves nothing running", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const enroll = await enrollWith(platform, dir.path);
  assert.equal(enroll.code, 0, enroll.stderr);
  const pacFile = join(dir.path, "proxy.pac");
  await Deno.writeTextFile(
    join(dir.path, "agent.json"),
    JSON.stringify({ proxy_pac_url: pacFile }),
  );
  await Deno.chmod(join(dir.path, "agent.json"), 0o600);
  const forged = "2020-01-01T00:00:00.000Z INFO  First heartbeat accepted";
  const scripts: Record<string, string> = {
    // Printing, directly and from a nested Worker that would keep printing after the decision.
    "a PAC that prints": `
      console.log(${JSON.stringify(forged)});
      console.error(${JSON.stringify(forged)});
      new Worker(URL.createObjectURL(new Blob([
        "setInterval(() => console.log(" + ${JSON.stringify(JSON.stringify(forged))} + "), 20)",
      ])), { type: "module" });
      function FindProxyForURL(url, host) { return "DIRECT"; }`,
    "a PAC that allocates without end": `
      function FindProxyForURL(url, host) {
        const kept = [];
        for (;;) kept.push("x".repeat(1024) + Math.random());
      }`,
    "a PAC that throws a huge message": `
      function FindProxyForURL(url, host) {
        throw new Error("x".repeat(100000) + "\\n" + ${JSON.stringify(forged)});
      }`,
  };
  for (const [what, script] of Object.entries(scripts)) {
    await Deno.writeTextFile(pacFile, script);
    const run = await runAgent(["--state-dir", dir.path, "run", "--once"]);
    assert.equal(run.code, 0, `${what}: ${run.stderr.slice(0, 2000)}`);
    for (const line of `${run.stdout}\n${run.stderr}`.split("\n")) {
      assert.ok(!line.startsWith(forged.slice(0, 24)), `${what} printed: ${line.slice(0, 200)}`);
    }
    const warnings = run.stderr.split("\n").filter((l) => l.includes("Ignoring proxy settings"));
    if (what === "a PAC that prints") {
      assert.deepEqual(warnings, []);
    } else {
      // One PAC error line, of bounded length, and the documented fallback (direct).
      assert.equal(warnings.length, 1, run.stderr.slice(0, 2000));
      assert.ok(warnings[0]!.length < 600, `${warnings[0]!.length} characters`);
      assert.match(
        warnings[0]!,
        what.includes("allocates")
          ? /failed: (?:the PAC evaluator (?:stopped|exceeded)|FindProxyForURL did not answer)/
          : /failed: FindProxyForURL failed: Error: x{100}/,
      );
    }
    assert.match(run.stderr, /Heartbeat accepted|First heartbeat accepted/);
    assert.deepEqual(evaluatorsLeft(), [], what);
  }
});

/** Processes still running the bundle's PAC evaluator (Linux /proc; none elsewhere). */
function evaluatorsLeft(): string[] {
  if (Deno.build.os !== "linux") return [];
  const file = MAIN.endsWith(".ts") ? "proxy/pac_evaluator.ts" : "proxy/pac_evaluator.js";
  const evaluator = new URL(file, `file://${MAIN}`).href;
  const left: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    try {
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes(evaluator)) {
        left.push(entry.name);
      }
    } catch {
      // not a process, or gone meanwhile
    }
  }
  return left;
}

Deno.test("SIGTERM stops a run stuck in a hostile PAC download within 5 s", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const enroll = await enrollWith(platform, dir.path);
  assert.equal(enroll.code, 0, enroll.stderr);
  const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const hostile: Record<string, RawStep[]> = {
    // 32b58ff looped for ever on this one, on the main thread, deaf to SIGTERM.
    "a negative chunk size": [chunked, "-6\r\nabc\r\n0\r\n\r\n", "close"],
    "a negative chunk size, then a stall": [chunked, "-6\r\nabc\r\n"],
    "a body that never ends": [chunked, "3\r\nabc\r\n"],
  };
  for (const [what, steps] of Object.entries(hostile)) {
    await using pac = rawHttpServer(steps);
    await Deno.writeTextFile(
      join(dir.path, "agent.json"),
      JSON.stringify({ proxy_pac_url: `${pac.url}proxy.pac` }),
    );
    await Deno.chmod(join(dir.path, "agent.json"), 0o600);
    await using run = startRun(dir.path);
    await until(() => pac.connections() > 0, `${what}: the PAC download`);
    await new Promise((r) => setTimeout(r, 300));
    const stopped = await run.terminate("SIGTERM");
    assert.ok(stopped.ms < 5000, `${what}: exit took ${Math.round(stopped.ms)} ms`);
    assert.equal(stopped.code, 0, `${what}: ${stopped.stderr.slice(0, 2000)}`);
  }
});
