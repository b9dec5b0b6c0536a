import type { InterfaceTraffic, NetworkTraffic } from "../platform/telemetry_wire.ts";

/** Cumulative counters of one interface, in the tuple's order. */
export type InterfaceCounters = [number, number, number, number, number, number];

/** Linux network counters (read by `head`: Deno refuses /proc to `--allow-read`). */
export const PROC_NET_DEV = "/proc/net/dev";

/** Spawning a reader costs ~0.75 ms CPU: counters are sampled at most this often. */
export const NETWORK_INTERVAL_MS = 60_000;

/**
 * Parses Linux `/proc/net/dev`: per interface 8 receive then 8 transmit counters, of which bytes,
 * packets and errs are kept. Loopback and interfaces that never moved a byte are left out.
 */
export function parseProcNetDev(text: string): Map<string, InterfaceCounters> {
  const out = new Map<string, InterfaceCounters>();
  for (const line of text.split("\n")) {
    const m = /^\s*([^\s:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const name = m[1]!;
    const fields = m[2]!.trim().split(/\s+/).map(Number);
    if (fields.length < 16 || !fields.every((n) => Number.isSafeInteger(n) && n >= 0)) continue;
    if (name === "lo" || (fields[0] === 0 && fields[8] === 0)) continue;
    out.set(name, [fields[0]!, fields[1]!, fields[2]!, fields[8]!, fields[9]!, fields[10]!]);
  }
  return out;
}

/**
 * Traffic between two samples. Interfaces absent from the previous sample (just appeared) are
 * left out; an interface with any counter going backwards gets null, never a wrong number.
 */
export function networkTraffic(
  previous: Map<string, InterfaceCounters>,
  current: Map<string, InterfaceCounters>,
  intervalMs: number,
): NetworkTraffic {
  const interfaces: Record<string, InterfaceTraffic> = {};
  for (const [name, now] of current) {
    const before = previous.get(name);
    if (!before) continue;
    const delta = now.map((v, i) => v - before[i]!) as InterfaceCounters;
    interfaces[name] = delta.every((d) => d >= 0) ? delta : null;
  }
  return { interval_seconds: Math.max(0, Math.round(intervalMs / 1000)), interfaces };
}
