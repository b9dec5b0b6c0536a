/**
 * ISO 8601 UTC timestamps without `Date.prototype.toISOString`: in Deno 2.9.6 its first call maps
 * runtime data a process otherwise never touches (docs/footprint.md has the cost), and a steady
 * `run` formats timestamps on every heartbeat. Same output as `toISOString`, extended years too.
 *
 * @module
 */

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** `new Date(ms).toISOString()`, e.g. `2026-12-01T04:40:00.123Z`; a RangeError for an invalid time. */
export function isoTime(ms: number): string {
  const d = new Date(ms);
  const t = d.getTime();
  if (Number.isNaN(t)) throw new RangeError("Invalid time value");
  const year = d.getUTCFullYear();
  const y = year >= 0 && year <= 9999
    ? pad(year, 4)
    : `${year < 0 ? "-" : "+"}${pad(Math.abs(year), 6)}`;
  return `${y}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${
    pad(d.getUTCHours(), 2)
  }:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}
