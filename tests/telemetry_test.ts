import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import type { LogFields, Logger, LogLevel } from "../src/log.ts";
import { TelemetryCollector } from "../src/telemetry/collector.ts";
import { parseLoadavgThreads } from "../src/telemetry/metrics.ts";
import {
  IOREG,
  parseIoregPlatformUuid,
  parseMachineIdFile,
  parseOsRelease,
  parseRegMachineGuid,
  parseRegTimeZone,
  parseSwVers,
  REG_EXE,
  SW_VERS,
  zoneFromLocaltimeLink,
} from "../src/telemetry/os_release.ts";
import { MetricsSchema } from "../src/wire/telemetry_wire.ts";
import { TelemetrySchema } from "../src/telemetry/telemetry_schema.ts";
import { denoSystem, type SystemSeam } from "../src/telemetry/system.ts";
import { VERSION } from "../src/version.ts";
import { telemetryFixture as fixture } from "./_support/helpers.ts";
import { DF, MACOS_DF, MACOS_MOUNT } from "../src/telemetry/filesystems.ts";
import { MACOS_NETSTAT } from "../src/telemetry/network_counters.ts";
import { HEAD, parseHeadSections } from "../src/telemetry/proc_reader.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";

const MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4";
const OS_RELEASE = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
`;
const MEMORY: Deno.SystemMemoryInfo = {
  total: 8_000_000_000,
  free: 1_000_000_000,
  available: 4_000_000_000,
  buffers: 50_000_000,
  cached: 0,
  swapTotal: 2_000_000_000,
  swapFree: 1_500_000_000,
};
const NICS: Deno.NetworkInterfaceInfo[] = [
  {
    family: "IPv4",
    name: "lo",
    address: "127.0.0.1",
    netmask: "255.0.0.0",
    scopeid: null,
    cidr: "127.0.0.1/8",
    mac: "00:00:00:00:00:00",
  },
  {
    family: "IPv4",
    name: "eth0",
    address: "192.0.2.2",
    netmask: "255.255.255.0",
    scopeid: null,
    cidr: "192.0.2.2/24",
    mac: "02:fc:00:00:00:01",
  },
  {
    family: "IPv6",
    name: "eth0",
    address: "fe80::fc:ff:fe00:1",
    netmask: "ffff:ffff:ffff:ffff::",
    scopeid: 4,
    cidr: "fe80::fc:ff:fe00:1/64",
    mac: "02:fc:00:00:00:01",
  },
];

/** A Linux host's helpers: `head` over DMI and /proc, `df`, `head` over /proc/stat and /proc/net/dev. */
function linuxCommands(path: string, args: string[]): Promise<string> {
  if (path === HEAD && args[0] === "-v") return Promise.resolve(fixture("linux_head_physical.txt"));
  if (path === HEAD && args.includes("/proc/net/dev")) {
    return Promise.resolve(fixture("linux_head_stat_net_1.txt"));
  }
  if (path === DF) return Promise.resolve(fixture("linux_df_container.txt"));
  return Promise.reject(new Error(`unexpected command ${path}`));
}

/** Two cores whose counters advance by 100 ms user, 50 ms sys and 850 ms idle per call. */
function advancingCpus() {
  let n = 0;
  return () => {
    n++;
    const times = { user: 1000 * n, nice: 0, sys: 500 * n, idle: 8500 * n, irq: 0 };
    return Promise.resolve(
      [0, 1].map(() => ({ model: "Intel(R) Xeon(R)", speed: 2900, times: { ...times } })),
    );
  };
}

/** What the default fake Linux host reports in the v1.3 inventory fields. */
const LINUX_V13_HOST = {
  cpu_model: "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
  cpu_mhz: 1800,
  hardware_vendor: "Dell Inc.",
  hardware_model: "Latitude 7420",
  hardware_serial: "4XK2LM3",
  time_zone: "Europe/Berlin",
  fqdn: null,
  domain: null,
  virtualization: { kind: "none", technology: null },
  agent_platform: "x86_64-unknown-linux-gnu",
};

function notFound(path: string): Error {
  return new Deno.errors.NotFound(`No such file or directory (os error 2): readfile '${path}'`);
}

/** A Linux host whose every call is counted; `overrides` replace single calls. */
function fakeSystem(
  overrides: Partial<SystemSeam> = {},
  files: Record<string, string | undefined> = {},
) {
  const calls: Record<string, number> = {};
  const count = (name: string) => {
    calls[name] = (calls[name] ?? 0) + 1;
  };
  const fileMap: Record<string, string | undefined> = {
    "/etc/os-release": OS_RELEASE,
    "/etc/machine-id": `${MACHINE_ID}\n`,
    ...files,
  };
  const base: SystemSeam = {
    os: "linux",
    arch: "x86_64",
    hostname: () => "web-1",
    osRelease: () => "6.1.0-18-amd64",
    osUptime: () => 12345,
    loadavg: () => [0.5, 0.25, 0.125],
    systemMemoryInfo: () => ({ ...MEMORY }),
    networkInterfaces: () => NICS.map((n) => ({ ...n })),
    hardwareConcurrency: () => 4,
    readTextFile: (path) => {
      const text = fileMap[path];
      return text === undefined ? Promise.reject(notFound(path)) : Promise.resolve(text);
    },
    runCommand: linuxCommands,
    cpus: advancingCpus(),
    readLink: (path) =>
      path === "/etc/localtime"
        ? Promise.resolve("/usr/share/zoneinfo/Europe/Berlin")
        : Promise.reject(notFound(path)),
  };
  const merged = { ...base, ...overrides };
  const system = {
    os: merged.os,
    arch: merged.arch,
    target: "x86_64-unknown-linux-gnu",
  } as SystemSeam;
  for (const [key, value] of Object.entries(merged)) {
    if (typeof value === "function") {
      (system as unknown as Record<string, unknown>)[key] = (...args: unknown[]) => {
        count(key);
        return (value as (...a: unknown[]) => unknown)(...args);
      };
    }
  }
  return { system, calls };
}

interface Line {
  level: LogLevel;
  msg: string;
  fields?: LogFields;
}

function recordingLogger(): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    lines.push({ level, msg, fields });
  };
  return {
    lines,
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    enabled: () => true,
  };
}

const FIXED = new Date("2026-01-02T03:04:05.678Z");

Deno.test("collector reports a Linux host through the seam", async () => {
  const { system } = fakeSystem();
  const logger = recordingLogger();
  const t = await new TelemetryCollector({ system, logger, now: () => FIXED }).collect();
  TelemetrySchema.parse(t);
  deepEqual(t, {
    agent_version: VERSION,
    collected_at: "2026-01-02T03:04:05.678Z",
    host: {
      hostname: "web-1",
      os: "linux",
      arch: "x86_64",
      os_release: "6.1.0-18-amd64",
      os_name: "Debian GNU/Linux",
      os_version: "12",
      cpu_count: 4,
      machine_id: MACHINE_ID,
      network_interfaces: [
        {
          name: "lo",
          family: "IPv4",
          address: "127.0.0.1",
          mac: "00:00:00:00:00:00",
          internal: true,
        },
        {
          name: "eth0",
          family: "IPv4",
          address: "192.0.2.2",
          mac: "02:fc:00:00:00:01",
          internal: false,
        },
        {
          name: "eth0",
          family: "IPv6",
          address: "fe80::fc:ff:fe00:1",
          mac: "02:fc:00:00:00:01",
          internal: true,
        },
      ],
      ...LINUX_V13_HOST,
      // FIXED minus 12345 s of uptime, to the second.
      boot_time: "2026-01-01T23:38:20Z",
    },
    metrics: {
      uptime_seconds: 12345,
      load_average: [0.5, 0.25, 0.13],
      memory: {
        total_bytes: 8_000_000_000,
        free_bytes: 1_000_000_000,
        available_bytes: 4_000_000_000,
        buffers_bytes: 50_000_000,
        cached_bytes: null,
        swap_total_bytes: 2_000_000_000,
        swap_free_bytes: 1_500_000_000,
        swap_used_bytes: 500_000_000,
      },
      // The first sample of a collector has no interval yet.
      cpu: null,
      filesystems: {
        age_seconds: 0,
        mounts: [["/", "ext4", 270553174016, 246344327168, 84735447040, 16777216, 16363902]],
      },
      // The first network sample is only a baseline: no traffic figures yet.
      threads: 262,
    },
  });
  deepEqual(logger.lines, []);
});

Deno.test("Windows load average zeros become null but real zeros elsewhere stay", () => {
  const windows = new TelemetryCollector({
    system: fakeSystem({ os: "windows", loadavg: () => [0, 0, 0] }).system,
  });
  equal(windows.metrics().load_average, null);
  const linux = new TelemetryCollector({ system: fakeSystem({ loadavg: () => [0, 0, 0] }).system });
  deepEqual(linux.metrics().load_average, [0, 0, 0]);
  // Should a future Deno report a real figure on Windows, it is passed through.
  const measured = new TelemetryCollector({
    system: fakeSystem({ os: "windows", loadavg: () => [1, 0, 0] }).system,
  });
  deepEqual(measured.metrics().load_average, [1, 0, 0]);
});

Deno.test("Windows memory reports ullAvailPhys as available and unmeasured figures as null", () => {
  const { system } = fakeSystem({
    os: "windows",
    systemMemoryInfo: () => ({ ...MEMORY, available: 0, buffers: 0, swapTotal: 2_000_000 }),
  });
  deepEqual(new TelemetryCollector({ system }).metrics().memory, {
    total_bytes: 8_000_000_000,
    free_bytes: null,
    available_bytes: 1_000_000_000,
    buffers_bytes: null,
    cached_bytes: null,
    swap_total_bytes: null,
    swap_free_bytes: null,
  });
});

Deno.test("macOS memory leaves buffers and cache null", () => {
  const { system } = fakeSystem({ os: "darwin", runCommand: () => Promise.resolve("") });
  const memory = new TelemetryCollector({ system }).metrics().memory;
  equal(memory?.buffers_bytes, null);
  equal(memory?.cached_bytes, null);
  equal(memory?.available_bytes, 4_000_000_000);
  equal(memory?.swap_free_bytes, 1_500_000_000);
});

Deno.test("missing /etc/machine-id falls back to /var/lib/dbus/machine-id", async () => {
  const dbusId = "0123456789abcdef0123456789abcdef";
  const { system } = fakeSystem({}, {
    "/etc/machine-id": undefined,
    "/var/lib/dbus/machine-id": `${dbusId.toUpperCase()}\n`,
  });
  const logger = recordingLogger();
  const host = await new TelemetryCollector({ system, logger }).host();
  equal(host.machine_id, dbusId);
  deepEqual(logger.lines, []);
});

Deno.test("an uninitialized /etc/machine-id falls back to the D-Bus copy", async () => {
  const dbusId = "fedcba9876543210fedcba9876543210";
  const { system } = fakeSystem({}, {
    "/etc/machine-id": "uninitialized\n",
    "/var/lib/dbus/machine-id": `${dbusId}\n`,
  });
  equal((await new TelemetryCollector({ system }).host()).machine_id, dbusId);
});

Deno.test("machine id is null with one debug line when no machine-id file is readable", async () => {
  const { system } = fakeSystem({}, { "/etc/machine-id": "\n" });
  const logger = recordingLogger();
  const collector = new TelemetryCollector({ system, logger });
  equal((await collector.host()).machine_id, null);
  equal((await collector.collect()).host.machine_id, null);
  equal(logger.lines.length, 1);
  const [line] = logger.lines;
  equal(line?.level, "debug");
  equal(line?.fields?.source, "machine_id");
  ok(String(line?.fields?.error).includes("/etc/machine-id: not a machine id"));
  ok(String(line?.fields?.error).includes("'/var/lib/dbus/machine-id'"));
});

Deno.test("permission denied yields null and one debug line per source, never a throw", async () => {
  const denied = (what: string) => () => {
    throw new Deno.errors.NotCapable(
      `Requires sys access to "${what}", run again with the --allow-sys flag`,
    );
  };
  const { system } = fakeSystem({
    hostname: denied("hostname"),
    osRelease: denied("osRelease"),
    osUptime: denied("osUptime"),
    loadavg: denied("loadavg"),
    systemMemoryInfo: denied("systemMemoryInfo"),
    networkInterfaces: denied("networkInterfaces"),
    hardwareConcurrency: denied("cpu"),
    readTextFile: (path) =>
      Promise.reject(
        new Deno.errors.NotCapable(
          `Requires read access to "${path}", run again with --allow-read`,
        ),
      ),
  });
  const logger = recordingLogger();
  const collector = new TelemetryCollector({ system, logger });
  for (let i = 0; i < 3; i++) {
    const t = await collector.collect();
    TelemetrySchema.parse(t);
    deepEqual(t.host, {
      hostname: null,
      os: "linux",
      arch: "x86_64",
      os_release: null,
      os_name: null,
      os_version: null,
      cpu_count: null,
      machine_id: null,
      network_interfaces: null,
      ...LINUX_V13_HOST,
      boot_time: null,
    });
    const { cpu: _cpu, filesystems: _fs, network: _net, threads: _threads, ...basic } = t.metrics;
    deepEqual(basic, { uptime_seconds: null, load_average: null, memory: null });
  }
  const sources = logger.lines.map((l) => l.fields?.source).sort();
  deepEqual(sources, [
    "boot_time",
    "cpu_count",
    "hostname",
    "load_average",
    "machine_id",
    "memory",
    "network_interfaces",
    "os_name",
    "os_release",
    "uptime_seconds",
  ]);
  for (const line of logger.lines) {
    equal(line.level, "debug");
    equal(line.msg, `Cannot read ${line.fields?.source}; reporting null`);
    ok(/Requires (sys|read) access/.test(String(line.fields?.error)), String(line.fields?.error));
  }
  const hostnameLine = logger.lines.find((l) => l.fields?.source === "hostname");
  equal(
    hostnameLine?.fields?.error,
    'Requires sys access to "hostname", run again with the --allow-sys flag',
  );
});

Deno.test("empty hostname and release strings from Deno become null", async () => {
  const { system } = fakeSystem({ hostname: () => "", osRelease: () => "" });
  const logger = recordingLogger();
  const host = await new TelemetryCollector({ system, logger }).host();
  equal(host.hostname, null);
  equal(host.os_release, null);
  deepEqual(logger.lines.map((l) => [l.fields?.source, l.fields?.error]).sort(), [
    ["hostname", "no usable value"],
    ["os_release", "no usable value"],
  ]);
});

Deno.test("os-release parsing handles double quotes, single quotes, escapes and comments", () => {
  const fields = parseOsRelease([
    "# comment",
    'NAME="Fedora Linux"',
    "VERSION_ID=39",
    "PRETTY_NAME='Fedora Linux 39 (Workstation Edition)'",
    'VARIANT="Say \\"hi\\" \\\\ \\$HOME \\`x\\`"',
    "  ID=fedora  ",
    "not a field",
    "EMPTY=",
    "",
  ].join("\r\n"));
  equal(fields.get("NAME"), "Fedora Linux");
  equal(fields.get("VERSION_ID"), "39");
  equal(fields.get("PRETTY_NAME"), "Fedora Linux 39 (Workstation Edition)");
  equal(fields.get("VARIANT"), 'Say "hi" \\ $HOME `x`');
  equal(fields.get("ID"), "fedora");
  equal(fields.get("EMPTY"), "");
  equal(fields.size, 6);
});

Deno.test("os-release falls back to /usr/lib/os-release and defaults NAME to Linux", async () => {
  const { system } = fakeSystem({}, {
    "/etc/os-release": undefined,
    "/usr/lib/os-release": "ID=arch\nBUILD_ID=rolling\n",
  });
  const logger = recordingLogger();
  const host = await new TelemetryCollector({ system, logger }).host();
  equal(host.os_name, "Linux");
  equal(host.os_version, null);
  deepEqual(logger.lines, []);
});

Deno.test("macOS name, version and IOPlatformUUID come from sw_vers and ioreg", async () => {
  const seen: Array<[string, string[]]> = [];
  const { system } = fakeSystem({
    os: "darwin",
    arch: "aarch64",
    runCommand: (path, args) => {
      seen.push([path, args]);
      if (path === SW_VERS) {
        return Promise.resolve(
          "ProductName:\t\tmacOS\nProductVersion:\t\t14.2.1\nBuildVersion:\t\t23C71\n",
        );
      }
      if (path === IOREG) {
        return Promise.resolve([
          "+-o MacBookPro18,3  <class IOPlatformExpertDevice, id 0x100000210>",
          "  {",
          '    "IOPlatformSerialNumber" = "C02XXXXXXX"',
          '    "IOPlatformUUID" = "564d5c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"',
          "  }",
        ].join("\n"));
      }
      return Promise.reject(new Error(`unexpected ${path}`));
    },
  });
  const host = await new TelemetryCollector({ system }).host();
  equal(host.os_name, "macOS");
  equal(host.os_version, "14.2.1");
  equal(host.machine_id, "564D5C3A-1B2C-4D5E-8F90-A1B2C3D4E5F6");
  deepEqual(seen, [
    [SW_VERS, []],
    [IOREG, ["-rd1", "-c", "IOPlatformExpertDevice"]],
  ]);
  deepEqual(parseSwVers("ProductName:\tMac OS X\nProductVersion:\t10.15.7\n"), {
    name: "Mac OS X",
    version: "10.15.7",
  });
  equal(parseIoregPlatformUuid('"IOPlatformUUID" = "not-a-uuid"'), null);
});

Deno.test("macOS helper failures yield null facts and one debug line each", async () => {
  const { system } = fakeSystem({
    os: "darwin",
    runCommand: (path) => Promise.reject(new Error(`${path} exited with code 1`)),
  });
  const logger = recordingLogger();
  const collector = new TelemetryCollector({ system, logger });
  await collector.collect();
  const host = await collector.host();
  equal(host.os_name, null);
  equal(host.os_version, null);
  equal(host.machine_id, null);
  deepEqual(logger.lines.map((l) => [l.fields?.source, l.fields?.error]).sort(), [
    ["filesystems", `${MACOS_DF} exited with code 1`],
    ["hardware", `${IOREG} exited with code 1`],
    ["machine_id", `${IOREG} exited with code 1`],
    ["network", `${MACOS_NETSTAT} exited with code 1`],
    ["os_name", `${SW_VERS} exited with code 1`],
  ]);
});

Deno.test("Windows MachineGuid comes from reg query and the version from the NT build", async () => {
  const seen: Array<[string, string[]]> = [];
  const { system } = fakeSystem({
    os: "windows",
    osRelease: () => "10.0.22631",
    runCommand: (path, args) => {
      seen.push([path, args]);
      return Promise.resolve(
        "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n" +
          "    MachineGuid    REG_SZ    6F2A1B3C-4D5E-6F70-8192-A3B4C5D6E7F8\r\n\r\n",
      );
    },
  });
  const host = await new TelemetryCollector({ system }).host();
  equal(host.machine_id, "6f2a1b3c-4d5e-6f70-8192-a3b4c5d6e7f8");
  equal(host.os_name, "Windows");
  equal(host.os_version, "10.0.22631");
  equal(host.os_release, "10.0.22631");
  deepEqual(seen, [
    [
      REG_EXE,
      ["query", "HKLM\\SOFTWARE\\Microsoft\\Cryptography", "/v", "MachineGuid", "/reg:64"],
    ],
    [REG_EXE, ["query", "HKLM\\HARDWARE\\DESCRIPTION\\System\\BIOS"]],
    [
      REG_EXE,
      [
        "query",
        "HKLM\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation",
        "/v",
        "TimeZoneKeyName",
      ],
    ],
  ]);
  equal(
    parseRegMachineGuid("ERROR: The system was unable to find the specified registry key"),
    null,
  );
});

Deno.test("the helpers the collector runs are exactly those allowed in the shared flags", async () => {
  const flags = await agentPermissionFlags();
  const run = flags.find((f) => f.startsWith("--allow-run="));
  ok(run, "no --allow-run= line in tasks/permissions.flags");
  const allowed = run.slice("--allow-run=".length).split(",");
  for (const path of [SW_VERS, IOREG, REG_EXE, DF, HEAD]) {
    ok(allowed.includes(path), `${path} not allowed`);
  }
});

Deno.test("static facts are read once per collector, dynamic ones at every collection", async () => {
  const { system, calls } = fakeSystem();
  const collector = new TelemetryCollector({ system });
  // Concurrent first calls must share one read, not race two.
  await Promise.all([collector.host(), collector.host()]);
  for (let i = 0; i < 3; i++) await collector.collect();
  // /etc/os-release, /etc/machine-id, /.dockerenv and /run/.containerenv
  equal(calls.readTextFile, 4);
  equal(calls.hardwareConcurrency, 1);
  // head over DMI and /proc once; df once; head over /proc/stat and /proc/net/dev twice (the
  // first run is a baseline, the second comes at once), then not again within a minute.
  equal(calls.runCommand, 4);
  equal(calls.readLink, 1);
  equal(calls.hostname, 5);
  equal(calls.osRelease, 1);
  equal(calls.networkInterfaces, 5);
  equal(calls.loadavg, 3);
  equal(calls.systemMemoryInfo, 3);
  equal(calls.osUptime, 4); // once more for boot_time
  equal(calls.cpus, undefined); // Linux: /proc/stat and /proc/cpuinfo, never node:os
  // A second collector (a new process) reads them again.
  await new TelemetryCollector({ system }).host();
  equal(calls.readTextFile, 8);
});

Deno.test("a source that recovers is reported again without a new debug line", () => {
  let fail = true;
  const { system } = fakeSystem({
    osUptime: () => {
      if (fail) throw new Error("boom");
      return 7;
    },
  });
  const logger = recordingLogger();
  const collector = new TelemetryCollector({ system, logger });
  equal(collector.metrics().uptime_seconds, null);
  fail = false;
  equal(collector.metrics().uptime_seconds, 7);
  fail = true;
  equal(collector.metrics().uptime_seconds, null);
  equal(logger.lines.length, 1);
});

Deno.test("memory and uptime are integers and load average has two decimals", () => {
  const { system } = fakeSystem({
    osUptime: () => 99.9,
    loadavg: () => [0.322265625, 0.25146484375, 0.1240234375],
    systemMemoryInfo: () => ({ ...MEMORY, total: 1024.6, free: -1, available: Number.NaN }),
  });
  const m = new TelemetryCollector({ system }).metrics();
  equal(m.uptime_seconds, 99);
  deepEqual(m.load_average, [0.32, 0.25, 0.12]);
  equal(m.memory?.total_bytes, 1025);
  equal(m.memory?.free_bytes, null);
  equal(m.memory?.available_bytes, null);
  MetricsSchema.parse(m);
});

Deno.test("a zero memory total (failed call) makes memory null", () => {
  const { system } = fakeSystem({ systemMemoryInfo: () => ({ ...MEMORY, total: 0 }) });
  const logger = recordingLogger();
  equal(new TelemetryCollector({ system, logger }).metrics().memory, null);
  equal(logger.lines[0]?.fields?.source, "memory");
});

Deno.test("malformed load averages become null", () => {
  for (const bad of [[], [1, 2], [1, Number.NaN, 2], [-1, 0, 0]]) {
    const { system } = fakeSystem({ loadavg: () => bad });
    equal(new TelemetryCollector({ system }).metrics().load_average, null, JSON.stringify(bad));
  }
});

Deno.test("loopback and link-local addresses are flagged internal", async () => {
  const cases: Array<[Deno.NetworkInterfaceInfo["family"], string, boolean]> = [
    ["IPv4", "127.0.0.1", true],
    ["IPv4", "127.1.2.3", true],
    ["IPv4", "169.254.10.20", true],
    ["IPv6", "::1", true],
    ["IPv6", "fe80::1", true],
    ["IPv6", "FEBF::1", true],
    ["IPv4", "10.0.0.1", false],
    ["IPv4", "192.0.2.127", false],
    ["IPv6", "fd00::2", false],
    ["IPv6", "fec0::1", false],
    ["IPv6", "2001:db8::1", false],
  ];
  const { system } = fakeSystem({
    networkInterfaces: () =>
      cases.map(([family, address]) => ({ ...NICS[0]!, name: "nic", family, address })),
  });
  const host = await new TelemetryCollector({ system }).host();
  deepEqual(
    host.network_interfaces?.map((nic) => [nic.family, nic.address, nic.internal]),
    cases,
  );
});

Deno.test("machine-id files are validated", () => {
  equal(parseMachineIdFile(`${MACHINE_ID.toUpperCase()}\n`), MACHINE_ID);
  equal(parseMachineIdFile("uninitialized\n"), null);
  equal(parseMachineIdFile("0".repeat(32)), null);
  equal(parseMachineIdFile(MACHINE_ID.slice(1)), null);
});

Deno.test("macOS and Windows cpu utilisation: null first, then os.cpus() deltas at every refresh", async () => {
  for (const os of ["darwin", "windows"]) {
    const collector = new TelemetryCollector({ system: fakeSystem({ os }).system });
    equal((await collector.sampleMetrics()).cpu, null);
    deepEqual((await collector.sampleMetrics()).cpu, {
      user: 10,
      system: 5,
      idle: 85,
      iowait: null,
      steal: null,
    });
    const noCpus = fakeSystem({ os, cpus: undefined }).system;
    equal((await new TelemetryCollector({ system: noCpus }).sampleMetrics()).cpu, null);
  }
});

Deno.test("Linux cpu utilisation comes from /proc/stat in the network sampler's head run", async () => {
  let nowMs = Date.parse("2026-01-02T03:00:00Z");
  const recorded = ["linux_head_stat_net_1.txt", "linux_head_stat_net_2.txt"];
  const heads: string[][] = [];
  const { system, calls } = fakeSystem({
    runCommand: (path, args) => {
      if (path !== HEAD || args[0] !== "-n") return linuxCommands(path, args);
      heads.push(args);
      // The third run replays the first sample: counters that went backwards.
      return Promise.resolve(fixture(recorded[(heads.length - 1) % 2]!));
    },
  });
  const collector = new TelemetryCollector({ system, now: () => new Date(nowMs) });
  const first = await collector.sampleMetrics();
  equal(first.cpu, null, "the first sample is only a baseline");
  nowMs += 1_000;
  const usage = { user: 2, system: 1.5, idle: 96.5, iowait: 0, steal: 0 };
  deepEqual(
    (await collector.sampleMetrics()).cpu,
    usage,
    "the second beat takes the second sample",
  );
  nowMs += 30_000;
  deepEqual((await collector.sampleMetrics()).cpu, usage, "the latest interval until the next");
  equal(heads.length, 2, "not due again within a minute");
  nowMs += 30_000;
  equal((await collector.sampleMetrics()).cpu, null, "counters went backwards");
  const args = ["-n", "4096", "/proc/stat", "/proc/net/dev", "/proc/loadavg"];
  deepEqual(heads, [args, args, args]);
  equal(calls.cpus, undefined);
  MetricsSchema.parse(first);
});

Deno.test("Linux threads come from /proc/loadavg in the sampler's head run and ride every beat", async () => {
  let nowMs = Date.parse("2026-01-02T03:00:00Z");
  const recorded = ["linux_head_stat_net_1.txt", "linux_head_stat_net_2.txt"];
  let runs = 0;
  const { system } = fakeSystem({
    runCommand: (path, args) =>
      path === HEAD && args[0] === "-n"
        ? Promise.resolve(fixture(recorded[runs++ % 2]!))
        : linuxCommands(path, args),
  });
  const collector = new TelemetryCollector({ system, now: () => new Date(nowMs) });
  equal((await collector.sampleMetrics()).threads, 262, "the baseline run already counts");
  nowMs += 1_000;
  equal((await collector.sampleMetrics()).threads, 225);
  nowMs += 30_000;
  const m = await collector.sampleMetrics();
  equal(m.threads, 225, "the latest count until the next run");
  equal(runs, 2);
  MetricsSchema.parse(m);
  for (const os of ["darwin", "windows"]) {
    const other = new TelemetryCollector({ system: fakeSystem({ os }).system });
    ok(!("threads" in await other.sampleMetrics()), `${os}: no threads member`);
  }
});

Deno.test("Linux threads are null with a debug line when /proc/loadavg is unreadable", async () => {
  const statNet = fixture("linux_head_stat_net_1.txt").split("\n==> /proc/loadavg <==")[0]!;
  const { system } = fakeSystem({
    runCommand: (path, args) =>
      path === HEAD && args[0] === "-n" ? Promise.resolve(statNet) : linuxCommands(path, args),
  });
  const logger = recordingLogger();
  const m = await new TelemetryCollector({ system, logger }).sampleMetrics();
  equal(m.threads, null);
  deepEqual(logger.lines.map((l) => l.fields?.source), ["threads"]);
});

Deno.test("parseLoadavgThreads reads the total of running/total and refuses anything else", () => {
  equal(parseLoadavgThreads("8.20 3.87 2.04 6/262 4765\n"), 262);
  equal(parseLoadavgThreads("0.00 0.01 0.05 1/1 1"), 1);
  for (const bad of ["", "8.20 3.87 2.04", "8.20 3.87 2.04 6/x 4765", "8.20 3.87 2.04 6/0 4765"]) {
    equal(parseLoadavgThreads(bad), null, bad);
  }
});

Deno.test("Linux cpu is null with a debug line when /proc/stat is unreadable; network still counts", async () => {
  let nowMs = Date.parse("2026-01-02T03:00:00Z");
  const sections = parseHeadSections(fixture("linux_head_stat_net_1.txt"));
  const netOnly = `==> /proc/net/dev <==\n${sections.get("/proc/net/dev")}\n\n` +
    `==> /proc/loadavg <==\n${sections.get("/proc/loadavg")}\n`;
  const { system } = fakeSystem({
    runCommand: (path, args) =>
      path === HEAD && args[0] === "-n" ? Promise.resolve(netOnly) : linuxCommands(path, args),
  });
  const logger = recordingLogger();
  const collector = new TelemetryCollector({ system, logger, now: () => new Date(nowMs) });
  await collector.sampleMetrics();
  nowMs += 60_000;
  const m = await collector.sampleMetrics();
  equal(m.cpu, null);
  ok(m.network !== undefined);
  deepEqual(logger.lines.map((l) => l.fields?.source), ["cpu"]);
});

Deno.test("filesystems ride one heartbeat per df run, df runs at most every 5 minutes", async () => {
  let nowMs = Date.parse("2026-01-02T03:00:00Z");
  let beat = 0;
  const netDev = () =>
    `==> /proc/stat <==\ncpu  ${beat} 0 ${beat} ${beat} 0 0 0 0 0 0\n\n==> /proc/net/dev <==\n` +
    `Inter-| Receive | Transmit\n face |bytes|bytes\n  eth0: ${1000 * beat} ${
      10 * beat
    } 0 0 0 0 0 0 ${500 * beat} ${5 * beat} 0 0 0 0 0 0\n`;
  const seen: string[] = [];
  const { system } = fakeSystem({
    runCommand: (path, args) => {
      seen.push(path === DF ? "df" : args[0] === "-v" ? "inventory" : "net");
      return path === HEAD && args[0] === "-n"
        ? Promise.resolve(netDev())
        : linuxCommands(path, args);
    },
  });
  const collector = new TelemetryCollector({ system, now: () => new Date(nowMs) });
  const beats: Array<{ fs?: number; net?: unknown }> = [];
  for (beat = 1; beat <= 7; beat++) {
    const m = await collector.sampleMetrics();
    beats.push({ fs: m.filesystems?.age_seconds, net: m.network });
    collector.delivered(m); // every heartbeat accepted
    nowMs += 60_000;
  }
  const traffic = { interval_seconds: 60, interfaces: { eth0: [1000, 10, 0, 500, 5, 0] } };
  deepEqual(beats, [
    { fs: 0, net: undefined }, // the first network sample is the baseline
    { fs: undefined, net: traffic },
    { fs: undefined, net: traffic },
    { fs: undefined, net: traffic },
    { fs: undefined, net: traffic },
    { fs: 0, net: traffic }, // 5 minutes after the first df
    { fs: undefined, net: traffic },
  ]);
  equal(seen.filter((s) => s === "df").length, 2);
  equal(seen.filter((s) => s === "net").length, 7);
  // `inventory` shows the newest figures whenever they were taken, with their age.
  nowMs += 30_000;
  const t = await collector.collect();
  equal(t.metrics.filesystems?.age_seconds, 150); // df ran at 5 min, now is 7.5 min
  deepEqual(t.metrics.network, { ...traffic, interval_seconds: 90 }); // network was due again
  MetricsSchema.parse(t.metrics);
});

Deno.test("filesystems a refused heartbeat carried ride the next one, until one is delivered", async () => {
  let nowMs = Date.parse("2026-01-01T00:00:00Z");
  const { system } = fakeSystem({ runCommand: linuxCommands });
  const collector = new TelemetryCollector({ system, now: () => new Date(nowMs) });
  const first = await collector.sampleMetrics(); // refused by the platform: not delivered
  equal(first.filesystems?.age_seconds, 0);
  nowMs += 60_000;
  const second = await collector.sampleMetrics();
  equal(second.filesystems?.age_seconds, 60, "the same df figures, older");
  collector.delivered(second);
  nowMs += 60_000;
  equal((await collector.sampleMetrics()).filesystems, undefined);
});

Deno.test("a failing df costs one debug line and leaves filesystems out", async () => {
  const logger = recordingLogger();
  const { system } = fakeSystem({
    runCommand: (path, args) =>
      path === DF
        ? Promise.reject(new Error(`${DF} exited with code 1`))
        : linuxCommands(path, args),
  });
  const collector = new TelemetryCollector({ system, logger });
  for (let i = 0; i < 2; i++) {
    equal((await collector.sampleMetrics(true)).filesystems, undefined);
  }
  deepEqual(logger.lines.map((l) => [l.fields?.source, l.fields?.error]), [
    ["filesystems", `${DF} exited with code 1`],
  ]);
});

Deno.test("macOS samples filesystems with df and mount, network with netstat -ibn", async () => {
  let nowMs = Date.parse("2026-01-02T03:00:00Z");
  const netstat = ["macos_netstat_ibn_1.txt", "macos_netstat_ibn_2.txt"];
  const seen: string[] = [];
  const { system } = fakeSystem({
    os: "darwin",
    runCommand: (path, args) => {
      seen.push([path, ...args].join(" "));
      switch (path) {
        case IOREG:
          return Promise.resolve(fixture("macos_ioreg_platform.txt"));
        case MACOS_DF:
          return Promise.resolve(fixture("macos_df_kil.txt"));
        case MACOS_MOUNT:
          return Promise.resolve(fixture("macos_mount.txt"));
        case MACOS_NETSTAT:
          return Promise.resolve(
            fixture(netstat[seen.filter((c) => c.startsWith(path)).length - 1]!),
          );
        default:
          return Promise.resolve("");
      }
    },
  });
  const collector = new TelemetryCollector({ system, now: () => new Date(nowMs) });
  const first = await collector.sampleMetrics();
  deepEqual(first.filesystems?.mounts.map(([m, type]) => `${type} ${m}`), [
    "apfs /",
    "apfs /System/Volumes/Data",
    "apfs /Volumes/Backup Disk",
    "hfs /Volumes/Install macOS",
  ]);
  equal(first.network, undefined, "the first netstat run is the baseline");
  ok(!("threads" in first));
  collector.delivered(first);
  nowMs += 60_000;
  const second = await collector.sampleMetrics();
  equal(second.filesystems, undefined, "df is not due again within 5 minutes");
  equal(second.network?.interval_seconds, 60);
  deepEqual(second.network?.interfaces.en0, [2674824, 2141, 0, 138304, 761, 1]);
  MetricsSchema.parse(second);
  deepEqual(seen.filter((c) => !c.startsWith(IOREG) && !c.startsWith(SW_VERS)), [
    "/bin/df -k -i -l",
    "/sbin/mount",
    "/usr/sbin/netstat -i -b -n",
    "/usr/sbin/netstat -i -b -n",
  ]);
});

Deno.test("no child-process samplers run on Windows", async () => {
  const { system, calls } = fakeSystem({
    os: "windows",
    runCommand: () => Promise.resolve(""),
  });
  const t = await new TelemetryCollector({ system }).collect();
  equal(t.metrics.filesystems, undefined);
  equal(t.metrics.network, undefined);
  // reg for the machine id, the BIOS and the time zone only.
  equal(calls.runCommand, 3);
});

Deno.test("macOS runs ioreg once for the machine id and the hardware", async () => {
  const { system } = fakeSystem({
    os: "darwin",
    runCommand: (path) =>
      Promise.resolve(path === IOREG ? fixture("macos_ioreg_platform.txt") : ""),
  });
  const seen: string[] = [];
  const counting = {
    ...system,
    runCommand: (p: string, a: string[]) => (seen.push(p), system.runCommand(p, a)),
  };
  const t = await new TelemetryCollector({ system: counting }).collect();
  equal(t.host.hardware_vendor, "Apple Inc.");
  equal(t.host.hardware_serial, "C02XJ0J5ML8");
  deepEqual(seen.filter((p) => p === IOREG || p === SW_VERS).sort(), [SW_VERS, IOREG].sort());
});

Deno.test("the time zone comes from /etc/localtime, /etc/timezone or the Windows registry", async () => {
  equal(
    zoneFromLocaltimeLink("../usr/share/zoneinfo/America/Argentina/Buenos_Aires"),
    "America/Argentina/Buenos_Aires",
  );
  equal(zoneFromLocaltimeLink("/var/db/timezone/zoneinfo/Europe/Berlin"), "Europe/Berlin");
  equal(zoneFromLocaltimeLink("/usr/share/zoneinfo/posix/Etc/GMT+5"), "Etc/GMT+5");
  equal(zoneFromLocaltimeLink("/etc/alternatives/localtime"), null);
  const debian = fakeSystem({ readLink: () => Promise.reject(new Error("not a link")) }, {
    "/etc/timezone": "Etc/UTC\n",
  }).system;
  equal((await new TelemetryCollector({ system: debian }).host()).time_zone, "Etc/UTC");
  const windows = fakeSystem({
    os: "windows",
    runCommand: (_path, args) =>
      Promise.resolve(
        args.includes("TimeZoneKeyName")
          ? "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation\r\n    TimeZoneKeyName    REG_SZ    W. Europe Standard Time\r\n\r\n"
          : "",
      ),
  }).system;
  equal(
    (await new TelemetryCollector({ system: windows }).host()).time_zone,
    "W. Europe Standard Time",
  );
  equal(parseRegTimeZone("ERROR: The system was unable to find the specified registry key"), null);
});

Deno.test({
  name: "helpers run with an empty environment and their exit status honoured",
  ignore: Deno.build.os === "windows",
  async fn() {
    // `env` prints its environment: nothing may leak from the agent (proxy settings, tokens),
    // only the fixed PATH and C locale runChild gives every child.
    Deno.env.set("ONECONNECT_ENROLLMENT_TOKEN", "oc_enr_must_not_leak");
    try {
      equal(
        await denoSystem.runCommand("/usr/bin/env", []),
        "LC_ALL=C\nPATH=/usr/bin:/bin:/usr/sbin:/sbin\n",
      );
    } finally {
      Deno.env.delete("ONECONNECT_ENROLLMENT_TOKEN");
    }
    await rejects(() => denoSystem.runCommand("/usr/bin/false", []), /exited with code 1/);
    equal(await denoSystem.runCommand("/usr/bin/false", [], { anyExit: true }), "");
  },
});

Deno.test("the /proc reader gives head a 2 s timeout, well inside the heartbeat it serves", async () => {
  const { readHeads } = await import("../src/telemetry/proc_reader.ts");
  const seen: { anyExit?: boolean; timeoutMs?: number }[] = [];
  await readHeads({
    runCommand: (_path, _args, options) => {
      seen.push(options ?? {});
      return Promise.resolve("==> /proc/loadavg <==\n0.1 0.2 0.3 1/99 42\n");
    },
  }, ["-n", "1", "/proc/loadavg"]);
  deepEqual(seen, [{ anyExit: true, timeoutMs: 2_000 }]);
});

Deno.test("Windows under Wine: reg.exe's empty BIOS values give null hardware, never a neighbour", async () => {
  // Each answer is what Wine 8.0's real reg.exe printed for that query (fixtures README).
  const { system } = fakeSystem({
    os: "windows",
    osRelease: () => "6.1.7601",
    runCommand: (_path, args) =>
      Promise.resolve(
        fixture(
          args.includes("MachineGuid")
            ? "wine_reg_machineguid.txt"
            : args.includes("TimeZoneKeyName")
            ? "wine_reg_timezone.txt"
            : "wine_reg_bios.txt",
        ),
      ),
  });
  const host = await new TelemetryCollector({ system }).host();
  equal(host.hardware_vendor, null);
  equal(host.hardware_model, null);
  equal(host.hardware_serial, null);
  equal(host.machine_id, "9e373f00-2e76-424d-97f5-67b986a38d76");
  equal(host.time_zone, "Greenwich Standard Time");
});

Deno.test("an empty time zone or sw_vers value is null, never the next line's text", () => {
  equal(
    parseRegTimeZone(
      "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation\r\n" +
        "    TimeZoneKeyName    REG_SZ    \r\n    DynamicDaylightTimeDisabled    REG_DWORD    0x0\r\n",
    ),
    null,
  );
  deepEqual(parseSwVers("ProductName:\t\nProductVersion:\t14.2.1\nBuildVersion:\t23C71\n"), {
    name: null,
    version: "14.2.1",
  });
});
