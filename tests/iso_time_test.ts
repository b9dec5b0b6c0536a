import assert from "node:assert/strict";
import { isoTime } from "../src/iso_time.ts";
import { seededRandom } from "../tasks/bench/fleet.ts";

Deno.test("isoTime formats exactly as toISOString, extended years and the epoch's edges included", () => {
  const random = seededRandom(20261201);
  const samples = [
    0,
    -1,
    1,
    Date.UTC(2026, 11, 1, 4, 40, 0, 123),
    8.64e15,
    -8.64e15,
    253402300800000,
  ];
  for (let i = 0; i < 5000; i++) samples.push(Math.floor((random() * 2 - 1) * 8.64e15));
  for (let i = 0; i < 5000; i++) samples.push(Math.floor(random() * 4102444800000));
  for (const ms of samples) assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
});

Deno.test("isoTime refuses an invalid time as toISOString does", () => {
  for (const ms of [NaN, 8.64e15 + 1, Infinity]) {
    assert.throws(() => isoTime(ms), RangeError);
  }
});
