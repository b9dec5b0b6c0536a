import assert from "node:assert/strict";
import { parseRetryAfter } from "../src/platform/backoff.ts";
import { HeartbeatSchedule, parseIntervalHint } from "../src/heartbeat/schedule.ts";
import { seededRandom } from "../tasks/bench/fleet.ts";

const START = Date.parse("2026-11-29T12:00:00Z");

Deno.test("heartbeat schedule: interval precedence is flag > platform > enrollment > 60 s", () => {
  const random = () => 0.5;
  assert.equal(new HeartbeatSchedule({ random }).intervalSeconds, 60);
  assert.equal(
    new HeartbeatSchedule({ random, enrollmentIntervalSeconds: 120 }).intervalSeconds,
    120,
  );
  const platform = new HeartbeatSchedule({ random, enrollmentIntervalSeconds: 120 });
  platform.applyHint(30);
  assert.equal(platform.intervalSeconds, 30);
  assert.equal(platform.intervalSource, "platform");
  const flag = new HeartbeatSchedule({
    random,
    intervalSeconds: 5,
    enrollmentIntervalSeconds: 120,
  });
  flag.applyHint(30);
  assert.equal(flag.intervalSeconds, 5);
  assert.equal(flag.intervalSource, "flag");
  assert.throws(() => new HeartbeatSchedule({ random, intervalSeconds: 0 }), RangeError);
  assert.throws(() => new HeartbeatSchedule({ random, intervalSeconds: 86401 }), RangeError);
});

Deno.test("heartbeat schedule clamps next_heartbeat_seconds and rejects bad values", () => {
  assert.deepEqual(parseIntervalHint(undefined), { kind: "absent" });
  assert.deepEqual(parseIntervalHint(30), { kind: "ok", seconds: 30 });
  assert.deepEqual(parseIntervalHint(5), { kind: "clamped", seconds: 10, raw: 5 });
  assert.deepEqual(parseIntervalHint(1e9), { kind: "clamped", seconds: 86400, raw: 1e9 });
  for (const bad of [0, -5, 1.5, "60", NaN, Infinity, true, {}]) {
    assert.equal(parseIntervalHint(bad).kind, "invalid", String(bad));
  }
  const schedule = new HeartbeatSchedule({ random: () => 0.5, enrollmentIntervalSeconds: 120 });
  schedule.applyHint(0);
  schedule.applyHint("60");
  assert.equal(schedule.intervalSeconds, 120);
});

Deno.test("heartbeat schedule jitters every wait within ±10 %", () => {
  const random = seededRandom(1);
  const schedule = new HeartbeatSchedule({ random, intervalSeconds: 60 });
  let low = Infinity;
  let high = -Infinity;
  for (let i = 0; i < 10_000; i++) {
    const wait = schedule.afterSuccess();
    low = Math.min(low, wait);
    high = Math.max(high, wait);
  }
  assert.ok(low >= 54 && low < 54.1, `lowest wait ${low}`);
  assert.ok(high <= 66 && high > 65.9, `highest wait ${high}`);
});

Deno.test("heartbeat schedule backs off from 1 s doubling to a 300 s cap, success resets", () => {
  const schedule = new HeartbeatSchedule({ random: () => 0.999, intervalSeconds: 60 });
  const waits = Array.from({ length: 12 }, () => Math.round(schedule.afterFailure()));
  assert.deepEqual(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
  assert.equal(schedule.failures, 12);
  assert.ok(Math.abs(schedule.afterSuccess() - 60 * (0.9 + 0.2 * 0.999)) < 1e-9);
  assert.equal(schedule.failures, 0);
  assert.equal(Math.round(schedule.afterFailure()), 1);
  // Full jitter: the lower bound of every backoff wait is zero.
  const zero = new HeartbeatSchedule({ random: () => 0 });
  assert.equal(zero.afterFailure(), 0);
});

Deno.test("heartbeat schedule treats Retry-After in both forms as a floor", () => {
  const now = START;
  const seconds = parseRetryAfter("2", now);
  const date = parseRetryAfter(new Date(now + 30_000).toUTCString(), now);
  assert.equal(seconds, 2);
  assert.equal(date, 30);
  const zero = new HeartbeatSchedule({ random: () => 0 });
  assert.equal(zero.afterFailure(seconds), 2);
  assert.equal(zero.afterFailure(date), 30);
  // Above the floor a fleet is spread over one interval, never below it.
  const high = new HeartbeatSchedule({ random: () => 0.999 });
  const spread = high.afterFailure(30);
  assert.ok(spread > 95 && spread <= 30 + 66, String(spread));
  const mid = new HeartbeatSchedule({ random: () => 0.5, intervalSeconds: 10 });
  assert.equal(mid.afterFailure(30), 35);
  // A backoff already longer than Retry-After wins.
  const long = new HeartbeatSchedule({ random: () => 0.999 });
  for (let i = 0; i < 9; i++) long.afterFailure();
  assert.ok(long.afterFailure(2) > 250);
});
