import assert from "node:assert/strict";
import { PlatformError } from "../src/errors.ts";
import {
  type AttemptFacts,
  classifyOutcome,
  conflictSequence,
  rejectionMessage,
  statusErrorOf,
} from "../src/heartbeat/outcome.ts";

const DIGEST_BEAT: AttemptFacts = {
  carriedHost: false,
  digestRefused: false,
  conflictRetried: false,
};
const FULL_BEAT: AttemptFacts = { ...DIGEST_BEAT, carriedHost: true };

const problem = (status: number, code?: string, extra: Record<string, unknown> = {}) =>
  new PlatformError(`platform answered ${status}${code ? ` ${code}` : ""}`, {
    kind: "http",
    httpStatus: status,
    code,
    contentType: "application/problem+json",
    problem: { type: "about:blank", title: "x", status, ...(code ? { code } : {}), ...extra },
  });

const kindOf = (error: unknown, facts: AttemptFacts = FULL_BEAT) =>
  classifyOutcome({ error }, facts).kind;

Deno.test("heartbeat outcome: an answer is accepted, whatever it holds", () => {
  const response = { next_heartbeat_seconds: 30 };
  assert.deepEqual(classifyOutcome({ response }, DIGEST_BEAT), { kind: "accepted", response });
});

Deno.test("heartbeat outcome: a beat without host refused with 400 or 422 is resent with host, once", () => {
  assert.equal(kindOf(problem(400), DIGEST_BEAT), "host_refused");
  assert.equal(kindOf(problem(422, "invalid_request"), DIGEST_BEAT), "host_refused");
  // A full beat refused, or a second refusal in the same process, backs off like any failure.
  assert.equal(kindOf(problem(400), FULL_BEAT), "retry");
  assert.equal(kindOf(problem(400), { ...DIGEST_BEAT, digestRefused: true }), "retry");
});

Deno.test("heartbeat outcome: credential rejections stop the loop; an edge's page at 401 does not", () => {
  for (
    const [status, code] of [[401, "credential_invalid"], [403, "agent_mismatch"], [
      404,
      "agent_unknown",
    ], [410, "credential_revoked"]] as const
  ) {
    assert.equal(kindOf(problem(status, code)), "rejected", `${status} ${code}`);
  }
  const edgePage = new PlatformError("platform answered 401 with text/html", {
    kind: "http",
    httpStatus: 401,
    contentType: "text/html",
  });
  assert.equal(kindOf(edgePage), "retry");
  assert.equal(kindOf(problem(401, "some_new_code")), "retry");
});

Deno.test("heartbeat outcome: the first sequence conflict continues at once, a second backs off", () => {
  const conflict = problem(409, "sequence_conflict", { last_sequence: 41 });
  assert.deepEqual(classifyOutcome({ error: conflict }, FULL_BEAT), {
    kind: "conflict",
    failure: conflict,
    lastSequence: 41,
  });
  assert.deepEqual(classifyOutcome({ error: conflict }, { ...FULL_BEAT, conflictRetried: true }), {
    kind: "retry",
    failure: conflict,
    lastSequence: 41,
  });
  // Without a usable last_sequence a 409 is an ordinary failure.
  for (const last of [undefined, -1, 1.5, "41"]) {
    const bad = problem(409, "sequence_conflict", { last_sequence: last });
    assert.equal(conflictSequence(bad), undefined, String(last));
    assert.deepEqual(classifyOutcome({ error: bad }, FULL_BEAT), { kind: "retry", failure: bad });
  }
});

Deno.test("heartbeat outcome: network errors retry; a non-PlatformError is an invalid response", () => {
  const network = new PlatformError("cannot connect", { kind: "network" });
  assert.equal(kindOf(network, DIGEST_BEAT), "retry");
  const outcome = classifyOutcome({ error: new TypeError("boom") }, FULL_BEAT);
  assert.equal(outcome.kind, "retry");
  assert.ok(outcome.kind === "retry" && outcome.failure.kind === "invalid_response");
  assert.equal(outcome.kind === "retry" && outcome.failure.message, "unexpected error: boom");
});

Deno.test("heartbeat outcome: rejection message and status error", () => {
  assert.equal(
    rejectionMessage(problem(404, "agent_unknown")),
    'Cannot send heartbeat: platform answered 404 agent_unknown; the platform no longer knows this agent: re-enroll with "oneconnect-agent enroll --force"',
  );
  assert.match(rejectionMessage(problem(403, "agent_mismatch")), /belongs to another agent/);
  assert.match(rejectionMessage(problem(401)), /no longer accepts this agent's credential/);
  assert.deepEqual(statusErrorOf(new PlatformError("down", { kind: "network" })), {
    kind: "network",
    http_status: null,
    code: null,
    message: "down",
  });
});
