import assert from "node:assert/strict";
import { CredentialRejectedError, PlatformError } from "../src/errors.ts";
import type { EnrollRequest, EnrollResponse } from "../src/wire/contract.ts";
import {
  abortableSleep,
  type EnrollClient,
  requestWithRetries,
  type RetryDeps,
} from "../src/enrollment/enroll_request.ts";
import { createLogger } from "../src/log.ts";
import { testContext } from "./_support/context_fixture.ts";

const BODY = { enrollment_token: "t" } as unknown as EnrollRequest;
const ANSWER = { agent_id: "agent-1" } as unknown as EnrollResponse;

function scripted(
  outcomes: Array<PlatformError | EnrollResponse>,
): EnrollClient & { calls: number } {
  const client = {
    calls: 0,
    enroll: () => {
      const next = outcomes[Math.min(client.calls++, outcomes.length - 1)]!;
      return next instanceof PlatformError ? Promise.reject(next) : Promise.resolve(next);
    },
    close: () => {},
  };
  return client;
}

function setup(shutdown?: AbortSignal) {
  const logs: string[] = [];
  const sleeps: number[] = [];
  let clock = 1_000_000;
  const { ctx } = testContext("/nonexistent", {
    logger: createLogger({ level: "debug", write: (line) => logs.push(line) }),
    shutdown,
  });
  const deps: RetryDeps = {
    sleep: (ms) => {
      sleeps.push(ms);
      clock += ms;
      return Promise.resolve();
    },
    random: () => 0.5,
    now: () => clock,
  };
  return { ctx, deps, logs, sleeps };
}

const unavailable = () =>
  new PlatformError("platform answered 503", { kind: "http", httpStatus: 503 });

Deno.test("requestWithRetries retries 503 within the deadline and returns the answer", async () => {
  const s = setup();
  const client = scripted([unavailable(), unavailable(), ANSWER]);
  assert.equal(
    await requestWithRetries(s.ctx, { client, body: BODY, timeoutSeconds: 120 }, s.deps),
    ANSWER,
  );
  assert.equal(client.calls, 3);
  assert.equal(s.sleeps.length, 2);
  assert.equal(s.logs.filter((l) => l.includes("Enrollment attempt failed; retrying")).length, 2);
});

Deno.test("requestWithRetries stops at the token's rejection (exit 3) without retrying", async () => {
  const s = setup();
  const rejected = new PlatformError("platform answered 409", {
    kind: "http",
    httpStatus: 409,
    code: "enrollment_token_consumed",
    contentType: "application/problem+json",
  });
  const client = scripted([rejected]);
  await assert.rejects(
    requestWithRetries(s.ctx, { client, body: BODY, timeoutSeconds: 120 }, s.deps),
    (e) =>
      e instanceof CredentialRejectedError && e.exitCode === 3 &&
      e.message ===
        "Cannot enroll: platform answered 409 enrollment_token_consumed; ask for a new enrollment token",
  );
  assert.equal(client.calls, 1);
  assert.deepEqual(s.sleeps, []);
});

Deno.test("requestWithRetries gives up at --timeout, and reports an unusable 2xx answer as spent", async () => {
  const s = setup();
  await assert.rejects(
    requestWithRetries(
      s.ctx,
      { client: scripted([unavailable()]), body: BODY, timeoutSeconds: 5 },
      s.deps,
    ),
    /^PlatformError: Cannot enroll: gave up after 5 s \(--timeout\) and \d+ attempts: platform answered 503/,
  );
  const unusable = new PlatformError("platform answered 201 with an unexpected body: body", {
    kind: "invalid_response",
    httpStatus: 201,
  });
  await assert.rejects(
    requestWithRetries(
      s.ctx,
      { client: scripted([unusable]), body: BODY, timeoutSeconds: 120 },
      s.deps,
    ),
    /Cannot enroll: refusing the platform's answer: platform answered 201 with an unexpected body: body; nothing was stored; the enrollment token is probably used up/,
  );
});

Deno.test("abortableSleep rejects with the abort reason and resolves otherwise", async () => {
  await abortableSleep(1, new AbortController().signal);
  const controller = new AbortController();
  const sleeping = abortableSleep(60_000, controller.signal);
  controller.abort(new Error("stop"));
  await assert.rejects(sleeping, /stop/);
  await assert.rejects(abortableSleep(1, AbortSignal.abort(new Error("already"))), /already/);
});
