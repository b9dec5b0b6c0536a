import assert from "node:assert/strict";
import { join } from "node:path";
import {
  evaluatePac,
  loadPacScript,
  PAC_MAX_BYTES,
  type PacDeps,
  parseHttpResponse,
  parsePacResult,
} from "../src/proxy/pac.ts";
import { pacHelpers, type PacRequest, runPac } from "../src/proxy/pac_worker.ts";
import { tempDir } from "./_support/helpers.ts";

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
    evalTimeoutMs: 2000,
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

Deno.test("evaluatePac runs in a Worker without any permission", async () => {
  await assert.rejects(
    evaluatePac(
      `function FindProxyForURL(url, host) { return Deno.readTextFileSync("/etc/hostname"); }`,
      new URL("https://platform.corp.example/"),
      deps(),
    ),
    /FindProxyForURL failed: NotCapable/,
  );
  await assert.rejects(
    evaluatePac(
      `function FindProxyForURL(url, host) { return Deno.env.get("HOME"); }`,
      new URL("https://platform.corp.example/"),
      deps(),
    ),
    /FindProxyForURL failed: NotCapable/,
  );
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

Deno.test("loadPacScript reads a file and refuses one over the size cap", async () => {
  await using dir = await tempDir();
  const small = join(dir.path, "small.pac");
  await Deno.writeTextFile(small, "function FindProxyForURL() { return 'DIRECT'; }");
  assert.match(await loadPacScript(small), /FindProxyForURL/);
  const big = join(dir.path, "big.pac");
  await Deno.writeFile(big, new Uint8Array(PAC_MAX_BYTES + 1).fill(32));
  await assert.rejects(loadPacScript(big), /larger than 1048576 bytes/);
  await assert.rejects(loadPacScript(join(dir.path, "absent.pac")), Deno.errors.NotFound);
});

Deno.test("loadPacScript fetches over http and refuses errors and https", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) =>
      new URL(req.url).pathname === "/ok.pac"
        ? new Response("function FindProxyForURL() { return 'DIRECT'; }")
        : new Response("nope", { status: 404 }),
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  assert.match(await loadPacScript(`${base}/ok.pac`), /FindProxyForURL/);
  await assert.rejects(loadPacScript(`${base}/missing.pac`), /the server answered 404/);
  await assert.rejects(loadPacScript("https://wpad.example/proxy.pac"), /https:\/\/ PAC URLs/);
});

Deno.test("loadPacScript gives up on a server that never answers", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })().catch(() => {});
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    await assert.rejects(loadPacScript(`http://127.0.0.1:${port}/p.pac`, 300), /within 0.3 s/);
  } finally {
    listener.close();
    for (const conn of held) conn.close();
    await accepting;
  }
});

Deno.test("parseHttpResponse honours Content-Length and chunked bodies", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const dec = (b: Uint8Array) => new TextDecoder().decode(b);
  assert.equal(
    dec(parseHttpResponse(enc("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"))),
    "abc",
  );
  assert.equal(
    dec(
      parseHttpResponse(
        enc(
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ),
      ),
    ),
    "abcde",
  );
  assert.throws(() => parseHttpResponse(enc("HTTP/1.1 302 Found\r\n\r\n")), /answered 302/);
  assert.throws(() => parseHttpResponse(enc("garbage")), /no complete HTTP header/);
});
