import assert from "node:assert/strict";
import { evaluatePac, type PacDeps, parsePacResult } from "../src/proxy/pac.ts";
import { pacHelpers, type PacRequest, runPac } from "../src/proxy/pac_worker.ts";

// Wednesday 2026-07-15 13:30:00 UTC.
const NOW = Date.UTC(2026, 6, 15, 13, 30, 0);

function helpers(dns: Record<string, string | null> = {}) {
  const unresolved = new Set<string>();
  const request: PacRequest = {
    script: "",
    url: "https://platform.corp.example/",
    host: "platform.corp.example",
    dns,
    myIp: "10.1.2.3",
    nowMs: NOW,
  };
  return { h: pacHelpers(request, unresolved), unresolved };
}

/** Evaluator processes this test process started that are still alive (Linux; none elsewhere). */
function evaluatorsRunning(): string[] {
  if (Deno.build.os !== "linux") return [];
  const found: string[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (ppid === Deno.pid && cmdline.includes("pac_evaluator")) found.push(entry.name);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function deps(overrides: Partial<PacDeps> = {}): PacDeps & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    resolve: (host) => {
      asked.push(host);
      return Promise.resolve(host.endsWith(".corp.example") ? "10.20.30.40" : null);
    },
    myIp: () => "10.1.2.3",
    nowMs: () => NOW,
    fetchTimeoutMs: 2000,
    // The tests of a script's answer are not tests of the time limit: under load (stress --cpu 2,
    // a parallel suite) starting the evaluator alone can take seconds.
    evalTimeoutMs: 60_000,
    evalMemoryMb: 64,
    ...overrides,
  };
}

Deno.test("PAC helpers follow the Netscape definitions", () => {
  const { h, unresolved } = helpers({ "platform.corp.example": "10.20.30.40" });
  assert.equal(h.isPlainHostName("intranet"), true);
  assert.equal(h.isPlainHostName("intranet.corp"), false);
  assert.equal(h.dnsDomainIs("www.corp.example", ".corp.example"), true);
  assert.equal(h.dnsDomainIs("www.other.example", ".corp.example"), false);
  assert.equal(h.localHostOrDomainIs("www", "www.corp.example"), true);
  assert.equal(h.localHostOrDomainIs("www.corp.example", "www.corp.example"), true);
  assert.equal(h.localHostOrDomainIs("www.other.example", "www.corp.example"), false);
  assert.equal(h.dnsDomainLevels("a.b.c"), 2);
  assert.equal(h.shExpMatch("https://x.corp.example/a", "https://*.corp.example/*"), true);
  assert.equal(h.shExpMatch("x.corp.example", "?.corp.example"), true);
  assert.equal(h.shExpMatch("xcorp.example", "*.corp.example"), false);
  assert.equal(h.convert_addr("10.0.0.1"), 167772161);
  assert.equal(h.isInNet("platform.corp.example", "10.20.0.0", "255.255.0.0"), true);
  assert.equal(h.isInNet("10.21.0.1", "10.20.0.0", "255.255.0.0"), false);
  assert.equal(h.dnsResolve("platform.corp.example"), "10.20.30.40");
  assert.equal(h.myIpAddress(), "10.1.2.3");
  assert.equal(h.isResolvable("unknown.example"), false);
  assert.deepEqual([...unresolved], ["unknown.example"]);
});

Deno.test("PAC time helpers use the request's clock, local or GMT", () => {
  const { h } = helpers();
  assert.equal(h.weekdayRange("MON", "FRI", "GMT"), true);
  assert.equal(h.weekdayRange("SAT", "SUN", "GMT"), false);
  assert.equal(h.weekdayRange("WED", "GMT"), true);
  assert.equal(h.timeRange(13, "GMT"), true);
  assert.equal(h.timeRange(9, 17, "GMT"), true);
  assert.equal(h.timeRange(14, 17, "GMT"), false);
  assert.equal(h.timeRange(13, 0, 13, 45, "GMT"), true);
  assert.equal(h.dateRange("JUL", "GMT"), true);
  assert.equal(h.dateRange("JAN", "MAR", "GMT"), false);
  assert.equal(h.dateRange(1, "JUL", 2026, 31, "DEC", 2026, "GMT"), true);
  assert.equal(h.dateRange(2025, "GMT"), false);
});

Deno.test("runPac reports a script without FindProxyForURL and script errors", () => {
  const base = { url: "https://a/", host: "a", dns: {}, myIp: "10.0.0.1", nowMs: NOW };
  assert.deepEqual(runPac({ ...base, script: "var x = 1;" }), {
    ok: false,
    error: "the script defines no FindProxyForURL function",
    unresolved: [],
  });
  const thrown = runPac({
    ...base,
    script: "function FindProxyForURL() { throw new Error('boom'); }",
  });
  assert.equal(thrown.ok, false);
  assert.match((thrown as { error: string }).error, /boom/);
  // Sloppy-mode scripts (undeclared variables) are common in the wild.
  const sloppy = runPac({
    ...base,
    script: "function FindProxyForURL(u, h) { p = 'PROXY a:1'; return p; }",
  });
  assert.deepEqual(sloppy, { ok: true, result: "PROXY a:1", unresolved: [] });
});

Deno.test("parsePacResult keeps the failover order, SOCKS and SOCKS5 as socks5 hops", () => {
  const hops = (result: string) =>
    parsePacResult(result).map((h) => h.kind === "direct" ? "direct" : h.url.href);
  assert.deepEqual(hops("PROXY a.corp:3128; HTTPS b.corp:443;SOCKS s:1080; DIRECT"), [
    "http://a.corp:3128/",
    "https://b.corp/",
    "socks5://s:1080",
    "direct",
  ]);
  assert.deepEqual(hops("SOCKS5 s5.corp"), ["socks5://s5.corp:1080"]);
  assert.deepEqual(parsePacResult(""), [{ kind: "direct" }]);
  assert.throws(() => parsePacResult("SOCKS4 s:1080"), /nothing usable/);
  assert.throws(() => parsePacResult("PROXY a:1/path"), /nothing usable/);
});

Deno.test("evaluatePac gives the script no permission", async () => {
  for (const call of ['Deno.readTextFileSync("/etc/hostname")', 'Deno.env.get("HOME")']) {
    await assert.rejects(
      evaluatePac(
        `function FindProxyForURL(url, host) { return ${call}; }`,
        new URL("https://platform.corp.example/"),
        deps(),
      ),
      /FindProxyForURL failed: NotCapable/,
    );
  }
  assert.deepEqual(evaluatorsRunning(), []);
});

Deno.test("evaluatePac survives a script that exhausts its memory budget, as a PAC error", async () => {
  await assert.rejects(
    evaluatePac(
      `function FindProxyForURL(url, host) {
        const kept = [];
        for (;;) kept.push("x".repeat(1024) + Math.random());
      }`,
      new URL("https://platform.corp.example/"),
      deps({ evalMemoryMb: 32 }),
    ),
    // V8 aborts at its heap limit, or (Linux) the resident-memory watch stops it first.
    /the PAC evaluator (?:stopped \(signal SIGTRAP\) without an answer; a script that needs more than 32 MB|exceeded its memory budget)/,
  );
  assert.deepEqual(evaluatorsRunning(), []);
});

Deno.test({
  name: "evaluatePac stops a script whose buffers outside the heap pass the memory budget",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const started = performance.now();
    await assert.rejects(
      evaluatePac(
        `function FindProxyForURL(url, host) {
          const kept = [];
          for (;;) kept.push(new Uint8Array(8 * 1024 * 1024).fill(1));
        }`,
        new URL("https://platform.corp.example/"),
        deps({ evalMemoryMb: 32 }),
      ),
      /the PAC evaluator exceeded its memory budget of 160 MB and was stopped/,
    );
    // Stopped by its memory, not by the (60 s) time budget of these tests.
    assert.ok(performance.now() - started < 30_000);
    assert.deepEqual(evaluatorsRunning(), []);
  },
});

Deno.test("evaluatePac leaves nothing running: nested workers and timers end with the answer", async () => {
  const result = await evaluatePac(
    `new Worker(URL.createObjectURL(new Blob(["for (;;) {}"])), { type: "module" });
    setInterval(() => {}, 10);
    function FindProxyForURL(url, host) { return "DIRECT"; }`,
    new URL("https://platform.corp.example/"),
    deps(),
  );
  assert.equal(result, "DIRECT");
  assert.deepEqual(evaluatorsRunning(), []);
});

Deno.test("evaluatePac reports an answer that is not a short string, and caps the error text", async () => {
  await assert.rejects(
    evaluatePac(
      `function FindProxyForURL(url, host) { return "PROXY a:1;".repeat(10000); }`,
      new URL("https://platform.corp.example/"),
      deps(),
    ),
    /the PAC evaluator gave an invalid answer/,
  );
  const error = await evaluatePac(
    `function FindProxyForURL(url, host) { throw new Error("x".repeat(100000)); }`,
    new URL("https://platform.corp.example/"),
    deps(),
  ).catch((e: Error) => e);
  assert.ok(error instanceof Error);
  assert.ok(error.message.length < 260, `${error.message.length} characters`);
});

Deno.test("evaluatePac kills the evaluator when its signal aborts", async () => {
  const controller = new AbortController();
  const started = performance.now();
  const evaluation = evaluatePac(
    "function FindProxyForURL(url, host) { for (;;) {} }",
    new URL("https://platform.corp.example/"),
    deps(),
    controller.signal,
  );
  setTimeout(() => controller.abort(), 200);
  await assert.rejects(evaluation, /the PAC evaluation was aborted/);
  assert.ok(performance.now() - started < 5000);
  assert.deepEqual(evaluatorsRunning(), []);
});

Deno.test("evaluatePac ends a script that never returns at the time limit", async () => {
  const started = performance.now();
  await assert.rejects(
    evaluatePac(
      "function FindProxyForURL(url, host) { for (;;) {} }",
      new URL("https://platform.corp.example/"),
      deps({ evalTimeoutMs: 300 }),
    ),
    /did not answer within 0.3 s/,
  );
  assert.ok(performance.now() - started < 5000);
  assert.deepEqual(evaluatorsRunning(), []);
});

Deno.test("evaluatePac resolves names the script asks for and evaluates again", async () => {
  const d = deps();
  const result = await evaluatePac(
    `function FindProxyForURL(url, host) {
      if (dnsResolve(host) !== "10.20.30.40") return "DIRECT";
      return isResolvable("wpad.corp.example") ? "PROXY " + dnsResolve("wpad.corp.example") + ":8080" : "DIRECT";
    }`,
    new URL("https://platform.corp.example/"),
    d,
  );
  assert.equal(result, "PROXY 10.20.30.40:8080");
  assert.deepEqual(d.asked, ["platform.corp.example", "wpad.corp.example"]);
});

Deno.test("the evaluator drops every permission it was started with before reading a script", async () => {
  // What a compiled agent does (it starts itself, with its own permissions): here `deno run`
  // of the evaluator with all of them.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-all",
      new URL("../src/proxy/pac_evaluator.ts", import.meta.url).href,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const request = (script: string): PacRequest => ({
    script,
    url: "https://platform.corp.example/",
    host: "platform.corp.example",
    dns: {},
    myIp: "10.1.2.3",
    nowMs: NOW,
  });
  const names = ["read", "write", "net", "env", "sys", "run", "ffi", "import"];
  const lines = [
    request(`function FindProxyForURL() { return Deno.readTextFileSync("/etc/hostname"); }`),
    request(`function FindProxyForURL() { return Deno.env.get("HOME"); }`),
    request(`function FindProxyForURL() {
      return ${
      JSON.stringify(names)
    }.map((name) => Deno.permissions.querySync({ name }).state).join(",");
    }`),
  ].map((r) => JSON.stringify(r)).join("\n") + "\n";
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(lines));
  await writer.close();
  const out = await child.output();
  const answers = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(answers.length, 3, new TextDecoder().decode(out.stderr));
  assert.match(answers[0].error, /^NotCapable/);
  assert.match(answers[1].error, /^NotCapable/);
  // "prompt" (or "denied" once asked, without a terminal): never "granted".
  assert.equal(answers[2].ok, true);
  assert.doesNotMatch(answers[2].result, /granted/);
  assert.equal(answers[2].result.split(",").length, names.length);
});
