/**
 * Load: `run --interval 1` for 30 s against a platform failing 30 % of heartbeats with 503. The
 * agent must not crash, every wait must stay within the backoff bounds, and the sequence the
 * platform recorded must rise strictly.
 */
import assert from "node:assert/strict";
import { DEFAULT_BACKOFF } from "../../src/backoff.ts";
import { StatusSchema } from "../../src/status.ts";
import { delay, Harness, jsonLines } from "./fault_helpers.ts";

const SOAK_MS = 30_000;

Deno.test("soak: 30 s of run --interval 1 with 30 % of heartbeats failing 503 stays within bounds", async () => {
  await using h = await Harness.open();
  const agentId = (await h.enroll()).agent_id as string;
  h.platform.injectFault({ route: "heartbeat", status: 503, probability: 0.3 });

  const run = h.spawn(["run", "--interval", "1"]);
  let exitedEarly = false;
  run.child.status.then(() => exitedEarly = true);
  await delay(SOAK_MS);
  assert.equal(exitedEarly, false, `the agent exited during the soak:\n${run.stderr()}`);
  run.kill("SIGTERM");
  const end = await run.exited();
  assert.equal(end.code, 0, end.stderr);
  assert.doesNotMatch(end.stderr, /internal error|error:/);

  // Every wait the agent chose, checked against the rules: after a success the interval ±10 %
  // (less the request time), after the n-th failure in a row full jitter in [0, min(300, 2^(n-1))].
  const attempts = jsonLines(end.stderr).filter((l) =>
    l.msg === "Heartbeat sent" || l.msg === "Heartbeat failed"
  );
  let failuresInRow = 0;
  let lastSequence = 0;
  let failed = 0;
  for (const line of attempts) {
    const next = Number(line.next_in_seconds);
    const sequence = Number(line.sequence);
    assert.ok(sequence > lastSequence, `sequence ${sequence} after ${lastSequence}`);
    lastSequence = sequence;
    assert.ok(Number.isFinite(next) && next >= 0, `wait ${next}`);
    if (line.msg === "Heartbeat sent") {
      failuresInRow = 0;
      assert.ok(next <= 1.1 + 0.001, `wait ${next} s after a success`);
    } else {
      failed++;
      failuresInRow++;
      assert.match(String(line.error), /^platform answered 503 /);
      const ceiling = Math.min(
        DEFAULT_BACKOFF.capSeconds,
        DEFAULT_BACKOFF.baseSeconds * 2 ** (failuresInRow - 1),
      );
      assert.ok(next <= ceiling + 0.001, `wait ${next} s after ${failuresInRow} failures`);
    }
  }
  const records = h.platform.heartbeats(agentId);
  console.log(
    `soak: ${attempts.length} attempts, ${failed} failed, ${records.length} recorded by the platform`,
  );
  assert.ok(attempts.length >= 15, `only ${attempts.length} attempts in 30 s`);
  assert.ok(failed > 0 && failed < attempts.length, `${failed} of ${attempts.length} failed`);
  assert.equal(records.length, attempts.length - failed);
  for (let i = 1; i < records.length; i++) {
    assert.ok(records[i]!.sequence > records[i - 1]!.sequence, "platform sequence not increasing");
  }
  const status = StatusSchema.parse(await h.status());
  assert.equal(status.stopped?.reason, "shutdown");
  assert.ok(status.sequence >= records.at(-1)!.sequence);
  assert.deepEqual(h.platform.contractViolations, []);
});
