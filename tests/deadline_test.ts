import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { Deadline, DEADLINE_TICK_MS, type DeadlineTimers, timeoutSignal } from "../src/deadline.ts";

/** A fake clock that also records every delay asked of it. */
function fakeTimers(): { clock: FakeTimers.Clock; timers: DeadlineTimers; delays: number[] } {
  const clock = FakeTimers.createClock(0);
  const delays: number[] = [];
  return {
    clock,
    delays,
    timers: {
      setTimeout: (callback, ms) => {
        delays.push(ms);
        return clock.setTimeout(callback, ms);
      },
      clearTimeout: (id) => clock.clearTimeout(id as FakeTimers.TimerId),
      now: () => clock.now,
    },
  };
}

Deno.test("deadline expires once, on time, through ticks of at most a second", () => {
  const { clock, timers, delays } = fakeTimers();
  const expiredAt: number[] = [];
  new Deadline(15_000, () => expiredAt.push(clock.now), timers);
  clock.tick(14_999);
  assert.deepEqual(expiredAt, []);
  clock.tick(1);
  assert.deepEqual(expiredAt, [15_000]);
  clock.tick(60_000);
  assert.deepEqual(expiredAt, [15_000]);
  assert.ok(delays.every((ms) => ms > 0 && ms <= DEADLINE_TICK_MS), `delays ${delays}`);
  assert.equal(clock.countTimers(), 0);
});

Deno.test("cleared deadline never expires and leaves no timer armed", () => {
  const { clock, timers } = fakeTimers();
  let expired = 0;
  const deadline = new Deadline(15_000, () => expired++, timers);
  clock.tick(2_500);
  deadline.clear();
  assert.equal(clock.countTimers(), 0);
  clock.tick(60_000);
  assert.equal(expired, 0);
  deadline.clear();
  {
    using _ = new Deadline(500, () => expired++, timers);
  }
  clock.tick(60_000);
  assert.equal(expired, 0);
});

Deno.test("timeoutSignal aborts with a TimeoutError, like AbortSignal.timeout", () => {
  const { clock, timers } = fakeTimers();
  const { signal } = timeoutSignal(2_000, timers);
  clock.tick(1_999);
  assert.equal(signal.aborted, false);
  clock.tick(1);
  assert.equal(signal.aborted, true);
  assert.equal((signal.reason as DOMException).name, "TimeoutError");
  const cleared = timeoutSignal(2_000, timers);
  cleared.deadline.clear();
  clock.tick(5_000);
  assert.equal(cleared.signal.aborted, false);
});

Deno.test("timeoutSignal on real timers kills a child that outlives it", async () => {
  const { signal, deadline } = timeoutSignal(200);
  using _ = deadline;
  const started = performance.now();
  await assert.rejects(
    new Deno.Command("/bin/sleep", { args: ["30"], signal, stdout: "null", stderr: "null" })
      .output()
      .then((out) => {
        if (!out.success) throw new Error(`killed: ${out.signal}`);
      }),
  );
  assert.ok(performance.now() - started < 10_000);
});
