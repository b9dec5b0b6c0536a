import assert from "node:assert/strict";
import { cloneRefusal } from "../src/state/clone_guard.ts";
import { CredentialRejectedError } from "../src/errors.ts";

const ENROLLED = "3d1219c7c4c5404aaa1f6d2a48adfda4";
const OTHER = "ffffffffffffffffffffffffffffffff";

Deno.test("clone guard refuses an identity enrolled under another machine id with exit 3", () => {
  const refusal = cloneRefusal(ENROLLED, OTHER, "send heartbeats");
  assert.ok(refusal instanceof CredentialRejectedError);
  assert.equal(refusal.exitCode, 3);
  assert.equal(
    refusal.message,
    'Refusing to send heartbeats: identity was enrolled on another host (cloned image?): re-enroll with "oneconnect-agent enroll --force"',
  );
});

Deno.test("clone guard allows the enrolling host and an unknown machine id on either side", () => {
  assert.equal(cloneRefusal(ENROLLED, ENROLLED, "send heartbeats"), null);
  assert.equal(cloneRefusal(null, OTHER, "send heartbeats"), null, "identity without machine id");
  assert.equal(cloneRefusal(ENROLLED, null, "send heartbeats"), null, "host without machine id");
  assert.equal(cloneRefusal(null, null, "send heartbeats"), null);
});
