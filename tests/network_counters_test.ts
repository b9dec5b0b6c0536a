import { deepEqual } from "node:assert/strict";
import {
  networkTraffic,
  parseNetstatIb,
  parseProcNetDev,
} from "../src/telemetry/network_counters.ts";
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

Deno.test("macOS netstat -ibn: Link rows of interfaces that moved bytes, without loopback", () => {
  deepEqual([...parseNetstatIb(telemetryFixture("macos_netstat_ibn_1.txt"))], [
    ["en0", [17964212688, 14529073, 0, 1189933120, 6128340, 0]],
    ["awdl0", [300214, 1432, 0, 452109, 1811, 0]],
    ["bridge0", [0, 0, 0, 342, 1, 0]],
    ["utun0", [1488, 12, 0, 2236, 23, 0]],
    ["utun3", [248912334, 250311, 2, 36002781, 201775, 0]],
  ]);
});

Deno.test("macOS netstat -ibn samples give traffic deltas per interface", () => {
  const traffic = networkTraffic(
    parseNetstatIb(telemetryFixture("macos_netstat_ibn_1.txt")),
    parseNetstatIb(telemetryFixture("macos_netstat_ibn_2.txt")),
    60_000,
  );
  deepEqual(traffic.interfaces.en0, [2674824, 2141, 0, 138304, 761, 1]);
  deepEqual(traffic.interfaces.utun3, [91786, 87, 0, 8456, 65, 0]);
  deepEqual(traffic.interfaces.awdl0, [0, 0, 0, 0, 0, 0]);
  deepEqual(
    parseNetstatIb("en0 1500 <Link#11> 84:2f:57:1e:0b:3c x 0 1 2 0 3 0\nheader only"),
    new Map(),
  );
});
