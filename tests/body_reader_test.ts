import assert from "node:assert/strict";
import { readCapped } from "../src/wire/body_reader.ts";
import { PlatformClient } from "../src/platform/client.ts";
import type { EnrollRequest, HeartbeatBody } from "../src/wire/contract.ts";
import { PlatformError } from "../src/errors.ts";
import { rawHttpServer, type RawStep } from "./_support/raw_http.ts";

const JSON_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";

/** A byte stream sending `chunks`, recording whether it was cancelled. */
function byteStream(chunks: number[]): { stream: ReadableStream<Uint8Array>; cancelled: boolean } {
  const state = { cancelled: false, stream: undefined as unknown as ReadableStream<Uint8Array> };
  let next = 0;
  state.stream = new ReadableStream({
    type: "bytes",
    pull(controller) {
      const size = chunks[next++];
      if (size === undefined) {
        // As Deno's own byte streams do: a pending BYOB read is answered with 0 bytes.
        controller.close();
        controller.byobRequest?.respond(0);
      } else controller.enqueue(new Uint8Array(size).fill(next));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return state;
}

Deno.test("readCapped reads a body of exactly the cap, growing past its first buffer", async () => {
  const s = byteStream([3000, 3000, 2192]);
  const bytes = await readCapped(s.stream, 8192);
  assert.equal(bytes?.byteLength, 8192);
  assert.deepEqual([bytes![0], bytes![3000], bytes![8191]], [1, 2, 3]);
  assert.equal(s.cancelled, false);
});

Deno.test("readCapped cancels a body one byte over the cap, declared or not", async () => {
  const undeclared = byteStream([5000, 3193]);
  assert.equal(await readCapped(undeclared.stream, 8192), undefined);
  assert.equal(undeclared.cancelled, true);
  const declared = byteStream([10]);
  assert.equal(await readCapped(declared.stream, 8192, 8193), undefined);
  assert.equal(declared.cancelled, true);
  const lying = byteStream([100, 100]);
  assert.equal(await readCapped(lying.stream, 150, 10), undefined);
  assert.equal(lying.cancelled, true);
});

Deno.test("readCapped returns no bytes for no body and an empty body", async () => {
  assert.equal((await readCapped(null, 10))?.byteLength, 0);
  assert.equal((await readCapped(byteStream([]).stream, 10, 0))?.byteLength, 0);
});

/** Platform answers (raw HTTP/1.1) that are malformed or stall at each step. */
const HOSTILE_ANSWERS: Array<[string, RawStep[]]> = [
  ["a negative chunk size", [
    `${JSON_HEAD}Transfer-Encoding: chunked\r\n\r\n-6\r\nabc\r\n`,
    "close",
  ]],
  ["a chunk size that is not hex", [
    `${JSON_HEAD}Transfer-Encoding: chunked\r\n\r\nzz\r\n`,
    "close",
  ]],
  ["a stall inside a chunk", [`${JSON_HEAD}Transfer-Encoding: chunked\r\n\r\n9\r\n{"a"`]],
  ["a stall after the chunk header", [`${JSON_HEAD}Transfer-Encoding: chunked\r\n\r\n`]],
  ["a Content-Length that is not a number", [`${JSON_HEAD}Content-Length: 1e3\r\n\r\n{}`, "close"]],
  ["a body shorter than its length", [`${JSON_HEAD}Content-Length: 50\r\n\r\n{}`, "close"]],
  ["a stall inside the body", [`${JSON_HEAD}Content-Length: 50\r\n\r\n{"a"`]],
  ["a stall inside the head", ["HTTP/1.1 200 OK\r\nContent-Ty"]],
  ["a stall before the status line", []],
  ["a gzip body that is not gzip", [
    `${JSON_HEAD}Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}`,
    "close",
  ]],
  ["one byte every 200 ms", [
    `${JSON_HEAD}Content-Length: 50\r\n\r\n`,
    ...Array.from({ length: 50 }, () => [{ pauseMs: 200 }, " "]).flat(),
  ]],
];

for (const [what, steps] of HOSTILE_ANSWERS) {
  Deno.test(`enroll, heartbeat and health end ${what} in a clear error within the request deadline`, async () => {
    await using server = rawHttpServer(steps);
    using client = new PlatformClient({ baseUrl: new URL(server.url), timeoutMs: 1000 });
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["health", () => client.health()],
      ["enroll", () => client.enroll({} as EnrollRequest)],
      ["heartbeat", () => client.heartbeat("agt_1", {} as HeartbeatBody)],
    ];
    for (const [name, call] of calls) {
      const started = performance.now();
      const error = await call().then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof PlatformError, `${name}: ${error}`);
      assert.doesNotMatch(error.message, /\n/);
      assert.ok(performance.now() - started < 3000, `${name}: ${performance.now() - started} ms`);
    }
  });
}

Deno.test("a caller's abort (the agent stopping) ends a stalled platform body at once", async () => {
  await using server = rawHttpServer([`${JSON_HEAD}Content-Length: 50\r\n\r\n{"a"`]);
  using client = new PlatformClient({ baseUrl: new URL(server.url), timeoutMs: 60_000 });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  const started = performance.now();
  await assert.rejects(client.health(controller.signal), (e: PlatformError) => {
    assert.equal(e.kind, "aborted");
    return true;
  });
  assert.ok(performance.now() - started < 2000);
});
