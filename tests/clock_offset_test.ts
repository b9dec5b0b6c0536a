import assert from "node:assert/strict";
import { join } from "node:path";
import { clockHint, ClockOffset, describeOffset } from "../src/wire/clock_offset.ts";
import { emptyStatus, readStatus } from "../src/state/status_store.ts";
import { renderStatusText } from "../src/heartbeat/status_text.ts";
import { tempDir } from "./_support/helpers.ts";

/** The offset one `ClockOffset` records for one answer, as the platform client feeds it. */
function offsetFromDate(date: string | null, sentWallMs: number, receivedWallMs: number) {
  const offset = new ClockOffset();
  offset.observe(date, sentWallMs, receivedWallMs);
  return offset.latest?.seconds;
}

Deno.test("ClockOffset compares the Date header with the middle of the round trip", () => {
  const sent = Date.UTC(2026, 0, 1, 12, 0, 0);
  assert.equal(offsetFromDate("Thu, 01 Jan 2026 12:10:00 GMT", sent, sent + 400), 600);
  assert.equal(offsetFromDate("Thu, 01 Jan 2026 11:50:00 GMT", sent, sent + 400), -600);
  assert.equal(offsetFromDate("Thu, 01 Jan 2026 12:00:00 GMT", sent, sent + 900), 0);
  assert.equal(offsetFromDate(null, sent, sent), undefined);
  assert.equal(offsetFromDate("yesterday", sent, sent), undefined);
});

Deno.test("ClockOffset warns once per process beyond 60 s and keeps the latest", () => {
  const warnings: string[] = [];
  const logger = { warn: (m: string) => warnings.push(m) } as unknown as ConstructorParameters<
    typeof ClockOffset
  >[0];
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const a = new ClockOffset(logger);
  a.observe(new Date(now + 30_000).toUTCString(), now, now);
  assert.equal(warnings.length, 0);
  a.observe(new Date(now + 120_000).toUTCString(), now, now);
  a.observe(new Date(now + 180_000).toUTCString(), now, now);
  new ClockOffset(logger).observe(new Date(now - 600_000).toUTCString(), now, now);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^The platform's clock is 2 min ahead of this host; /);
  assert.equal(a.latest?.seconds, 180);
});

Deno.test("certificate time hints carry the measured offset", () => {
  assert.equal(clockHint(undefined), "");
  assert.equal(
    clockHint({ seconds: -600, measuredAt: "2026-01-01T12:00:00.000Z" }),
    "; the platform's clock is 10 min behind this host (measured 2026-01-01T12:00:00.000Z)",
  );
  assert.equal(describeOffset(0), "agrees with this host");
  assert.equal(describeOffset(45), "is 45 s ahead of this host");
});

Deno.test("status.json without clock_offset still loads; status shows one when present", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "status.json");
  const old = emptyStatus("a1");
  await Deno.writeTextFile(path, JSON.stringify(old));
  assert.ok(await readStatus(path));
  const withOffset = {
    ...old,
    clock_offset: { seconds: 612, measured_at: "2026-01-01T12:00:00Z" },
  };
  await Deno.writeTextFile(path, JSON.stringify(withOffset));
  const loaded = await readStatus(path);
  assert.equal(loaded?.clock_offset?.seconds, 612);
  const text = renderStatusText(
    {
      agent_id: "a1",
      platform_url: "https://p/",
      enrolled_at: "2026-01-01T00:00:00Z",
      certificate_not_after: "2027-01-01T00:00:00Z",
    },
    loaded,
    Date.UTC(2026, 0, 1, 12, 0, 0),
  );
  assert.match(text, /^Clock offset: +612 s: the platform's clock is 10 min ahead of this host/m);
});
