import { deepEqual } from "node:assert/strict";
import { networkTraffic, parseProcNetDev } from "../src/telemetry/network_counters.ts";
import { telemetryFixture } from "./_support/helpers.ts";

Deno.test("/proc/net/dev keeps interfaces that moved traffic, without loopback", () => {
  deepEqual(
    [...parseProcNetDev(telemetryFixture("linux_proc_net_dev.txt"))],
    [["eth0", [87097696, 3163, 0, 217182, 2504, 0]]],
  );
});

Deno.test("/proc/net/dev lines with missing or bad counters are skipped", () => {
  const text = [
    "Inter-|   Receive |  Transmit",
    " face |bytes packets|bytes packets",
    "  eth1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15",
    "  eth2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x",
    "wlp2s0:10 20 1 0 0 0 0 0 30 40 2 0 0 0 0 0",
  ].join("\n");
  // A name running into its counters (no space after the colon) is still read.
  deepEqual([...parseProcNetDev(text)], [["wlp2s0", [10, 20, 1, 30, 40, 2]]]);
});

Deno.test("network traffic is the delta per interface, null after a wrap, absent when new", () => {
  const before = new Map([
    ["eth0", [1000, 10, 0, 2000, 20, 0] as [number, number, number, number, number, number]],
    ["eth1", [4294967000, 5, 0, 10, 1, 0] as [number, number, number, number, number, number]],
  ]);
  const after = new Map([
    ["eth0", [1500, 15, 1, 2600, 26, 0] as [number, number, number, number, number, number]],
    ["eth1", [200, 6, 0, 20, 2, 0] as [number, number, number, number, number, number]],
    ["wg0", [5, 1, 0, 5, 1, 0] as [number, number, number, number, number, number]],
  ]);
  deepEqual(networkTraffic(before, after, 60_400), {
    interval_seconds: 60,
    interfaces: { eth0: [500, 5, 1, 600, 6, 0], eth1: null },
  });
});
