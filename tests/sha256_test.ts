import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256Hex } from "../src/sha256.ts";
import { OPENSSL_BIN, opensslAvailable } from "./_support/openssl_pki.ts";
import { tempDir } from "./_support/helpers.ts";

Deno.test("sha256Hex gives FIPS 180-4's vectors and hashes a view's own bytes and a string's UTF-8", async () => {
  assert.equal(
    await sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    await sha256Hex(""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  const buffer = new Uint8Array([9, 1, 2, 3, 9]);
  assert.equal(await sha256Hex(buffer.subarray(1, 4)), await sha256Hex(new Uint8Array([1, 2, 3])));
  assert.equal(await sha256Hex("é€"), await sha256Hex(new TextEncoder().encode("é€")));
});

Deno.test({
  name: "sha256Hex agrees with openssl dgst",
  ignore: !opensslAvailable(),
  fn: async () => {
    await using dir = await tempDir();
    const text = JSON.stringify({ hostname: "host-é", addresses: ["10.0.0.1", "fe80::1"] }).repeat(
      20,
    );
    const path = join(dir.path, "host.json");
    await Deno.writeTextFile(path, text);
    const out = await new Deno.Command(OPENSSL_BIN, { args: ["dgst", "-sha256", "-r", path] })
      .output();
    assert.ok(out.success);
    assert.equal(await sha256Hex(text), new TextDecoder().decode(out.stdout).split(" ")[0]);
  },
});
