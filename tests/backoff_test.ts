import assert from "node:assert/strict";
import {
  DEFAULT_BACKOFF,
  failureDelay,
  parseRetryAfter,
  RETRY_AFTER_CAP_SECONDS,
  withJitter,
} from "../src/platform/backoff.ts";

Deno.test("backoff doubles from 1 s and caps at 300 s", () => {
  const ceilings = [1, 2, 3, 4, 5, 8, 9, 10, 40].map((n) => failureDelay(n, () => 1));
  assert.deepEqual(ceilings, [1, 2, 4, 8, 16, 128, 256, 300, 300]);
  assert.equal(failureDelay(1, () => 0), 0);
  assert.equal(failureDelay(1000, () => 0.5), DEFAULT_BACKOFF.capSeconds / 2);
});

Deno.test("jitter stays within ±10 %", () => {
  assert.equal(withJitter(60, () => 0), 54);
  assert.equal(withJitter(60, () => 0.5), 60);
  assert.ok(Math.abs(withJitter(60, () => 0.999999) - 66) < 1e-3);
});

Deno.test("Retry-After parses seconds and HTTP-dates, capped, garbage ignored", () => {
  const now = Date.parse("2026-11-29T12:00:00Z");
  assert.equal(parseRetryAfter("2", now), 2);
  assert.equal(parseRetryAfter(" 120 ", now), 120);
  assert.equal(parseRetryAfter("99999999", now), RETRY_AFTER_CAP_SECONDS);
  assert.equal(parseRetryAfter("Sun, 29 Nov 2026 12:00:30 GMT", now), 30);
  assert.equal(parseRetryAfter("Sun, 29 Nov 2026 11:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter("Mon, 29 Nov 2027 12:00:00 GMT", now), RETRY_AFTER_CAP_SECONDS);
  for (const bad of [null, undefined, "", "-5", "soon", "1.5", "1e9", "2026-11-29"]) {
    assert.equal(parseRetryAfter(bad, now), undefined, String(bad));
  }
});

Deno.test("failureDelay never goes below Retry-After and spreads only above it", () => {
  // No Retry-After: plain full-jitter backoff, and no draw for the spread.
  let draws = 0;
  const counted = () => (draws++, 1);
  assert.equal(failureDelay(3, counted, undefined, () => 99), 4);
  assert.equal(failureDelay(3, counted, 0, () => 99), 4);
  assert.equal(draws, 2);
  // A Retry-After above the backoff is a floor, plus the caller's spread.
  assert.equal(failureDelay(1, () => 0.5, 30), 30);
  assert.equal(failureDelay(1, () => 0.5, 30, () => 7), 37);
  // A backoff longer than the floor wins.
  assert.equal(failureDelay(10, () => 1, 2, () => 7), 300);
});

Deno.test("failureDelay never exceeds 3600 s plus the 360 s spread, whatever the inputs", () => {
  const huge = () => 1e9;
  assert.equal(failureDelay(1, () => 0.999, 99999, huge), 3960);
  assert.equal(failureDelay(1, () => 0.999, 3600, () => 86400 * 1.1), 3960);
  assert.equal(
    failureDelay(40, () => 0.999, undefined, huge, { baseSeconds: 1, capSeconds: 1e9 }),
    3960,
  );
  assert.equal(failureDelay(1, () => 0, 120, () => 30), 150, "normal spreads are untouched");
});
