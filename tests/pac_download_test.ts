import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPacScript, parseHttpResponse } from "../src/proxy/pac_download.ts";
import { tempDir } from "./_support/helpers.ts";
import { rawHttpServer, type RawStep } from "./_support/raw_http.ts";

Deno.test("loadPacScript reads a file and refuses one over the size cap", async () => {
  await using dir = await tempDir();
  const small = join(dir.path, "small.pac");
  await Deno.writeTextFile(small, "function FindProxyForURL() { return 'DIRECT'; }");
  assert.match(await loadPacScript(small), /FindProxyForURL/);
  const big = join(dir.path, "big.pac");
  await Deno.writeFile(big, new Uint8Array(1024 * 1024 + 1).fill(32));
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

const CHUNKED = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

const OK_HEAD = "HTTP/1.1 200 OK\r\n";

/** Malformed or stalled PAC answers and the error each must end in. */

const HOSTILE_DOWNLOADS: Array<[string, RawStep[], RegExp]> = [
  ["a negative chunk size", [CHUNKED, "-6\r\nabc\r\n0\r\n\r\n", "close"], /invalid chunk size/],
  ["a negative chunk size, then a stall", [CHUNKED, "-6\r\nabc\r\n"], /within 1 s/],
  ["a chunk size with 0x", [CHUNKED, "0x3\r\nabc\r\n0\r\n\r\n", "close"], /invalid chunk size/],
  ["a chunk size with a sign", [CHUNKED, "+3\r\nabc\r\n0\r\n\r\n", "close"], /invalid chunk size/],
  [
    "a chunk size that is not hex",
    [CHUNKED, "zz\r\nabc\r\n0\r\n\r\n", "close"],
    /invalid chunk size/,
  ],
  ["a chunk size of 9 digits", [CHUNKED, "100000000\r\nabc\r\n", "close"], /invalid chunk size/],
  ["a chunk size past the end", [CHUNKED, "ffffff\r\nabc\r\n0\r\n\r\n", "close"], /inside a chunk/],
  [
    "a chunk longer than its size",
    [CHUNKED, "2\r\nabc\r\n0\r\n\r\n", "close"],
    /longer than its size/,
  ],
  ["no last chunk", [CHUNKED, "3\r\nabc\r\n", "close"], /before its last chunk/],
  ["an empty chunked body", [CHUNKED, "close"], /before its last chunk/],
  ["a chunk size line without CRLF", [CHUNKED, "3abc", "close"], /before its last chunk/],
  [
    "a Content-Length that is not a number",
    [`${OK_HEAD}Content-Length: 1e3\r\n\r\nabc`, "close"],
    /invalid Content-Length/,
  ],
  [
    "a negative Content-Length",
    [`${OK_HEAD}Content-Length: -1\r\n\r\nabc`, "close"],
    /invalid Content-Length/,
  ],
  [
    "two different Content-Lengths",
    [`${OK_HEAD}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, "close"],
    /content-length twice/,
  ],
  [
    "a body shorter than its Content-Length",
    [`${OK_HEAD}Content-Length: 10\r\n\r\nabc`, "close"],
    /before its Content-Length/,
  ],
  [
    "a gzip transfer encoding",
    [`${OK_HEAD}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, "close"],
    /Transfer-Encoding "gzip, chunked"/,
  ],
  [
    "a gzip content encoding",
    [`${OK_HEAD}Content-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc`, "close"],
    /Content-Encoding "gzip"/,
  ],
  ["a header line without a colon", [`${OK_HEAD}garbage\r\n\r\nabc`, "close"], /malformed/],
  ["a stall before the status line", [], /within 1 s/],
  ["a stall inside the head", [`${OK_HEAD}Content-Le`], /within 1 s/],
  ["a stall after the head", [`${OK_HEAD}Content-Length: 3\r\n\r\n`], /within 1 s/],
  ["a stall inside the body", [`${OK_HEAD}Content-Length: 9\r\n\r\nabc`], /within 1 s/],
  ["a stall inside a chunk", [CHUNKED, "9\r\nabc"], /within 1 s/],
  [
    "one byte every 200 ms",
    [OK_HEAD, ...Array.from({ length: 50 }, () => [{ pauseMs: 200 }, "X"]).flat()],
    /within 1 s/,
  ],
];

for (const [what, steps, expected] of HOSTILE_DOWNLOADS) {
  Deno.test(`loadPacScript ends ${what} in a clear error within its deadline`, async () => {
    await using server = rawHttpServer(steps);
    const started = performance.now();
    await assert.rejects(loadPacScript(`${server.url}proxy.pac`, 1000), expected);
    assert.ok(performance.now() - started < 3000, `${performance.now() - started} ms`);
  });
}

Deno.test("loadPacScript ends a stalled download at once when its signal aborts", async () => {
  await using server = rawHttpServer([CHUNKED, "-6\r\nabc\r\n"]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  const started = performance.now();
  await assert.rejects(
    loadPacScript(`${server.url}proxy.pac`, 60_000, controller.signal),
    /the PAC download was aborted/,
  );
  assert.ok(performance.now() - started < 2000);
});
