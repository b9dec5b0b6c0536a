import assert from "node:assert/strict";
import { decodeUtf8Strict } from "../src/platform/responses.ts";

const fatal = new TextDecoder("utf-8", { fatal: true });

function strict(bytes: Uint8Array): string | null {
  try {
    return fatal.decode(bytes);
  } catch {
    return null;
  }
}

Deno.test("decodeUtf8Strict accepts UTF-8, a literal U+FFFD included, and drops a BOM", () => {
  assert.equal(decodeUtf8Strict(new TextEncoder().encode('{"a":"é€𝄞"}')), '{"a":"é€𝄞"}');
  assert.equal(decodeUtf8Strict(new TextEncoder().encode("x\uFFFDy")), "x\uFFFDy");
  assert.equal(decodeUtf8Strict(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), "{}");
  assert.equal(
    decodeUtf8Strict(new Uint8Array([0xef, 0xbb, 0xbf, 0xef, 0xbf, 0xbd])),
    "\uFFFD",
  );
});

Deno.test("decodeUtf8Strict refuses what a fatal decoder refuses", () => {
  for (
    const bad of [
      [0xff],
      [0x7b, 0xe2, 0x82],
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0x80],
      [0xef, 0xbf, 0xbd, 0xff],
      [0xef, 0xbb, 0xbf, 0xff],
    ]
  ) {
    assert.equal(decodeUtf8Strict(new Uint8Array(bad)), null, `bytes ${bad}`);
  }
  // Random short byte strings from the bytes that matter: same verdict and text as `fatal`.
  const alphabet = [0x41, 0x80, 0xbf, 0xc2, 0xe2, 0xed, 0xef, 0xbb, 0xbd, 0xf0, 0x9f, 0xff];
  let seed = 7;
  for (let n = 0; n < 5_000; n++) {
    const bytes = new Uint8Array(1 + (n % 6));
    for (let i = 0; i < bytes.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      bytes[i] = alphabet[seed % alphabet.length]!;
    }
    assert.equal(decodeUtf8Strict(bytes), strict(bytes), `bytes ${Array.from(bytes)}`);
  }
});
