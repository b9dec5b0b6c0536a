import assert from "node:assert/strict";
import { readCapped } from "../src/platform/body_reader.ts";

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
