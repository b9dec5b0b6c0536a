import type { InterfaceTraffic, NetworkTraffic } from "../wire/telemetry_wire.ts";

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

/** macOS `netstat`. */
export const MACOS_NETSTAT = "/usr/sbin/netstat";
/** `netstat` arguments on macOS: per-interface counters with bytes, numeric. */
export const MACOS_NETSTAT_ARGS = ["-i", "-b", "-n"] as const;

/**
 * Parses macOS `netstat -i -b -n`: the `<Link#n>` row of each interface carries its counters,
 * the last seven columns `Ipkts Ierrs Ibytes Opkts Oerrs Obytes Coll` (the address column is empty
 * for interfaces without a MAC). Loopback (`lo0`) and interfaces that never moved a byte are left
 * out; a `*` after a name (interface down) is dropped.
 */
export function parseNetstatIb(text: string): Map<string, InterfaceCounters> {
  const out = new Map<string, InterfaceCounters>();
  for (const line of text.split("\n")) {
    const tokens = line.trim().split(/\s+/);
    if (tokens.length < 10 || !tokens[2]!.startsWith("<Link#")) continue;
    const name = tokens[0]!.replace(/\*$/, "");
    const [ipkts, ierrs, ibytes, opkts, oerrs, obytes] = tokens.slice(-7).map(Number);
    const counters = [ibytes, ipkts, ierrs, obytes, opkts, oerrs] as number[];
    if (!counters.every((n) => Number.isSafeInteger(n) && n >= 0)) continue;
    if (name.startsWith("lo") || (counters[0] === 0 && counters[3] === 0)) continue;
    out.set(name, counters as InterfaceCounters);
  }
  return out;
}
