/** parseCaPin: a pin is exactly `sha256:` and 64 hex digits (the value `ca-pin` prints). */
import assert from "node:assert/strict";
import { parseCaPin } from "../src/trust/ca_pin.ts";

const HEX = "ab".repeat(32);

Deno.test("parseCaPin accepts sha256:<64 hex digits>, lower-casing it, and refuses anything more or less", () => {
  assert.equal(parseCaPin(` SHA256:${HEX.toUpperCase()} `), `sha256:${HEX}`);
  for (
    const bad of [`sha256:${HEX}0`, `sha256:${HEX}:x`, `sha256:${HEX.slice(1)}`, HEX, `x${HEX}`]
  ) {
    assert.throws(
      () => parseCaPin(bad),
      /^UsageError: Invalid CA pin .* \(--ca-pin\): expected sha256:<64 hex digits>/,
      bad,
    );
  }
});
