import assert from "node:assert/strict";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { IdentitySchema } from "../src/state/identity_store.ts";
import { describeTrust, rootStoreOf, trustOf } from "../src/trust/trust_source.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";

Deno.test("an identity file from before the trust field loads, trusting what its enrollment did", async () => {
  const identity = await makeIdentity(await createDevCa());
  const { trust: _none, ...old } = { ...identity, trust: undefined };
  const withCaFile = IdentitySchema.parse(JSON.parse(JSON.stringify(old)));
  assert.deepEqual(trustOf(withCaFile), { source: "ca_file" });
  assert.equal(rootStoreOf(trustOf(withCaFile)), "none");
  const withoutCaFile = IdentitySchema.parse({ ...old, bootstrap_ca_certificates: [] });
  assert.deepEqual(trustOf(withoutCaFile), { source: "mozilla" });
  assert.equal(rootStoreOf(trustOf(withoutCaFile)), "mozilla");
});

Deno.test("each trust source maps to exactly one Deno root store and one phrase", () => {
  assert.equal(rootStoreOf({ source: "system" }), "system");
  assert.equal(rootStoreOf({ source: "ca_pin", ca_pins: ["sha256:ab"] }), "none");
  assert.equal(describeTrust({ source: "system" }), "the operating system's trust store");
  assert.equal(describeTrust({ source: "ca_file" }, 2), "the CA file (2 certificates)");
  assert.equal(
    describeTrust({ source: "ca_pin", ca_pins: ["sha256:ab"] }),
    "the presented CA certificate matching --ca-pin sha256:ab",
  );
});
