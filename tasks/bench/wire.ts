/**
 * Heartbeat body size: the loop's own body building (`heartbeatLoop`, every beat answered 200) fed
 * by a real TelemetryCollector whose operating system is either this host or a synthetic one. The
 * first beat of a process carries the full `host`; later ones only `host_digest` (inventory delta).
 */
import { heartbeatLoop } from "../../src/heartbeat/loop.ts";
import { HeartbeatSchedule } from "../../src/heartbeat/schedule.ts";
import { FEATURE_HOST_DIGEST, type HeartbeatBody } from "../../src/wire/contract.ts";
import { silentLogger } from "../../src/log.ts";
import { emptyStatus } from "../../src/state/status_store.ts";
import { TelemetryCollector } from "../../src/telemetry/collector.ts";
import type { SystemSeam } from "../../src/telemetry/system.ts";

function nic(
  name: string,
  family: "IPv4" | "IPv6",
  address: string,
  prefix: number,
  mac: string,
): Deno.NetworkInterfaceInfo {
  return {
    name,
    family,
    address,
    netmask: "",
    scopeid: family === "IPv6" ? 0 : null,
    cidr: `${address}/${prefix}`,
    mac,
  };
}

/**
 * A busy but ordinary Linux server with 4 interfaces (loopback, two NICs, a container bridge) and
 * 8 addresses, with long values wherever a field can be long: the size to budget for.
 */
export const FOUR_INTERFACE_HOST: SystemSeam = {
  os: "linux",
  arch: "x86_64",
  hostname: () => "build-agent-017.eu-west-1.corp.example.com",
  osRelease: () => "6.8.0-1021-aws",
  osUptime: () => 31_536_000,
  loadavg: () => [12.57, 10.93, 9.88],
  systemMemoryInfo: () => ({
    total: 270_582_939_648,
    free: 101_234_567_890,
    available: 201_234_567_890,
    buffers: 1_234_567_890,
    cached: 0,
    swapTotal: 68_719_476_736,
    swapFree: 68_000_000_000,
  }),
  networkInterfaces: () => [
    nic("lo", "IPv4", "127.0.0.1", 8, "00:00:00:00:00:00"),
    nic("lo", "IPv6", "::1", 128, "00:00:00:00:00:00"),
    nic("ens5", "IPv4", "172.31.255.254", 20, "0a:1b:2c:3d:4e:5f"),
    nic("ens5", "IPv6", "2001:db8:abcd:1234:81b2:c3ff:fed4:e5f6", 64, "0a:1b:2c:3d:4e:5f"),
    nic("ens5", "IPv6", "fe80::81b2:c3ff:fed4:e5f6", 64, "0a:1b:2c:3d:4e:5f"),
    nic("ens6", "IPv4", "192.168.100.123", 24, "0a:1b:2c:3d:4e:60"),
    nic("docker0", "IPv4", "172.17.0.1", 16, "02:42:ac:11:00:01"),
    nic("docker0", "IPv6", "fe80::42:acff:fe11:1", 64, "02:42:ac:11:00:01"),
  ],
  hardwareConcurrency: () => 64,
  readTextFile: (path) => {
    if (path.endsWith("os-release")) {
      return Promise.resolve(
        'NAME="Ubuntu"\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
      );
    }
    if (path.endsWith("machine-id")) return Promise.resolve("4c4c4544004d3510804bb4c04f313233\n");
    return Promise.reject(new Deno.errors.NotFound(path));
  },
  runCommand: () => Promise.reject(new Error("no commands on the synthetic host")),
};

/**
 * The bodies `heartbeatLoop` builds for the first `beats` beats of one process of `agentId` on
 * `system`, from `sequence` on, each answered 200: the first carries `host`, the rest (host
 * unchanged) only `host_digest`.
 */
export async function heartbeatBodies(
  system: SystemSeam | undefined,
  agentId: string,
  sequence: number,
  beats = 2,
): Promise<HeartbeatBody[]> {
  const collector = new TelemetryCollector({ system, logger: silentLogger });
  const status = emptyStatus(agentId);
  status.sequence = sequence - 1;
  status.sequence_reserved = sequence - 1;
  // A platform that advertised the inventory delta (contract v1.3).
  status.platform_features = [FEATURE_HOST_DIGEST];
  const sent: HeartbeatBody[] = [];
  const done = new AbortController();
  await heartbeatLoop({
    agentId,
    send: (body) => {
      sent.push(body);
      collector.delivered(body.metrics);
      if (sent.length >= beats) done.abort();
      return Promise.resolve({ next_heartbeat_seconds: 60, features: [FEATURE_HOST_DIGEST] });
    },
    snapshot: async () => ({
      host: await collector.host(),
      metrics: await collector.sampleMetrics(),
    }),
    status: { current: status, save: () => Promise.resolve() },
    schedule: new HeartbeatSchedule({ random: () => 0.5 }),
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now(),
    // No waiting between beats: the next one starts as soon as the loop asks for a timer.
    timers: {
      setTimeout: (callback) => {
        queueMicrotask(callback);
        return 0;
      },
      clearTimeout: () => {},
    },
    logger: silentLogger,
    shutdown: done.signal,
  });
  if (sent.length !== beats) {
    throw new Error(`Cannot build heartbeat bodies: the loop sent ${sent.length} of ${beats}`);
  }
  return sent;
}

/** UTF-8 bytes of the body as the client sends it (`JSON.stringify`). */
export function bodyBytes(body: unknown): number {
  return new TextEncoder().encode(JSON.stringify(body)).length;
}
