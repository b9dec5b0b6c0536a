/**
 * Size-capped reads of byte streams (platform answers, PAC files and PAC downloads): one copy, so
 * that every untrusted body is refused at the same bound without ever being buffered beyond it.
 */

/** First read buffer when no length is expected; grows by doubling. */
const INITIAL_READ_BYTES = 4096;

/**
 * Reads `stream` (a byte stream) to its end, or cancels it and returns undefined as soon as it is
 * known to be longer than `max` bytes: from `expected` (a declared length) or while reading.
 */
export async function readCapped(
  stream: ReadableStream<Uint8Array> | null,
  max: number,
  expected?: number,
): Promise<Uint8Array | undefined> {
  const declared = expected !== undefined && Number.isFinite(expected) ? expected : undefined;
  if (declared !== undefined && declared > max) {
    await stream?.cancel().catch(() => {});
    return undefined;
  }
  if (!stream) return new Uint8Array(0);
  // Read into our own buffer, sized to the declared length: the default reader allocates a
  // 64 KiB buffer per read, and at one heartbeat a second that garbage piled up as several MB
  // of external memory between two GCs and grew the malloc heap for good (deno task bench).
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new Uint8Array(
    declared !== undefined ? Math.min(declared, max) + 1 : INITIAL_READ_BYTES,
  );
  let total = 0;
  try {
    while (true) {
      if (total === buffer.byteLength) {
        if (total > max) {
          await reader.cancel().catch(() => {});
          return undefined;
        }
        const grown = new Uint8Array(Math.min(buffer.byteLength * 2, max + 1));
        grown.set(buffer);
        buffer = grown;
      }
      const { done, value } = await reader.read(
        new Uint8Array(buffer.buffer, total, buffer.byteLength - total),
      );
      if (value) {
        // The read transfers the buffer: keep using the one it came back in.
        buffer = new Uint8Array(value.buffer);
        total += value.byteLength;
      }
      if (done) break;
      if (total > max) {
        await reader.cancel().catch(() => {});
        return undefined;
      }
    }
  } finally {
    reader.releaseLock();
  }
  return buffer.subarray(0, total);
}
