import { deepEqual, equal, ok } from "node:assert/strict";
import { type Telemetry, TelemetrySchema } from "../src/telemetry.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { runAgent } from "./helpers.ts";

const linuxOnly = Deno.build.os !== "linux";

async function commandOutput(cmd: string, args: string[] = []): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).output();
  ok(out.success, `${cmd} failed`);
  return new TextDecoder().decode(out.stdout).trim();
}

function meminfoKb(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(text);
  ok(m, `${key} missing from /proc/meminfo`);
  return Number(m[1]);
}

/** Runs `inventory --log-level debug` with `permissions` and parses what it printed. */
async function inventory(permissions?: string[]) {
  const result = await runAgent(["--log-level", "debug", "inventory"], { permissions });
  const telemetry = result.code === 0 ? TelemetrySchema.parse(JSON.parse(result.stdout)) : null;
  return { ...result, telemetry };
}

Deno.test({
  name: "inventory reports this host as the operating system's own tools see it",
  ignore: linuxOnly,
  async fn() {
    const result = await runAgent(["inventory"]);
    equal(result.stderr, "");
    equal(result.code, 0);
    const t = TelemetrySchema.parse(JSON.parse(result.stdout));
    // Pretty JSON with two-space indentation and a final newline.
    equal(result.stdout, JSON.stringify(t, null, 2) + "\n");

    equal(t.host.hostname, await commandOutput("hostname"));
    equal(t.host.cpu_count, Number(await commandOutput("nproc")));
    equal(t.host.os, "linux");
    equal(t.host.os_release, (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim());
    const meminfo = await Deno.readTextFile("/proc/meminfo");
    equal(t.metrics.memory?.total_bytes, meminfoKb(meminfo, "MemTotal") * 1024);
    equal(t.metrics.memory?.swap_total_bytes, meminfoKb(meminfo, "SwapTotal") * 1024);

    const loadavg = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).map(Number);
    const reported = t.metrics.load_average;
    ok(reported, "load_average is null");
    reported.forEach((value, i) => {
      ok(
        Math.abs(value - loadavg[i]!) <= 0.5,
        `load ${i}: ${value} vs /proc/loadavg ${loadavg[i]}`,
      );
    });

    const uptime = Number((await Deno.readTextFile("/proc/uptime")).split(" ")[0]);
    ok(Math.abs((t.metrics.uptime_seconds ?? -100) - uptime) <= 5, "uptime off /proc/uptime");

    const lo = t.host.network_interfaces?.find((n) => n.name === "lo" && n.family === "IPv4");
    deepEqual(lo, {
      name: "lo",
      family: "IPv4",
      address: "127.0.0.1",
      mac: "00:00:00:00:00:00",
      internal: true,
    });
    for (const nic of t.host.network_interfaces ?? []) {
      if (nic.name !== "lo" && !nic.address.startsWith("fe80:")) {
        equal(nic.internal, false, `${nic.name} ${nic.address} flagged internal`);
      }
    }
  },
});

// Deno 2.9 never measures the page cache, and reading /proc/meminfo needs --allow-all.
const NULL_ON_LINUX = new Set(["metrics.memory.cached_bytes"]);

function nullPaths(value: unknown, path: string, out: string[]): string[] {
  if (value === null) out.push(path);
  else if (typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) nullPaths(v, path ? `${path}.${k}` : k, out);
  }
  return out;
}

Deno.test({
  name: "inventory with the shared permissions leaves no Linux field null",
  ignore: linuxOnly,
  async fn() {
    const { code, stderr, telemetry } = await inventory();
    equal(code, 0);
    // At debug level every unavailable source would have left a line here.
    equal(stderr, "");
    ok(telemetry);
    const nulls = nullPaths(telemetry, "", []).filter((p) => !NULL_ON_LINUX.has(p));
    deepEqual(nulls, []);
    ok(/^[0-9a-f]{32}$/.test(telemetry.host.machine_id ?? ""));
    ok((telemetry.host.network_interfaces ?? []).length > 0);
  },
});

/** What losing each `--allow-sys` entry must do to `inventory`: a null field, or a loud failure. */
const WITHOUT: Record<string, { field: (t: Telemetry) => unknown; source: string } | "fails"> = {
  hostname: { field: (t) => t.host.hostname, source: "hostname" },
  osRelease: { field: (t) => t.host.os_release, source: "os_release" },
  osUptime: { field: (t) => t.metrics.uptime_seconds, source: "uptime_seconds" },
  loadavg: { field: (t) => t.metrics.load_average, source: "load_average" },
  networkInterfaces: { field: (t) => t.host.network_interfaces, source: "network_interfaces" },
  systemMemoryInfo: { field: (t) => t.metrics.memory, source: "memory" },
  // The configuration resolver needs the uid to choose the default state directory.
  uid: "fails",
};

Deno.test({
  name: "every --allow-sys entry in the shared permissions is needed by inventory",
  ignore: linuxOnly,
  async fn() {
    const flags = await agentPermissionFlags();
    const sysIndex = flags.findIndex((f) => f.startsWith("--allow-sys="));
    ok(sysIndex >= 0, "tasks/permissions.flags must list --allow-sys=<calls>, not all of sys");
    const entries = flags[sysIndex]!.slice("--allow-sys=".length).split(",");
    deepEqual(
      entries.filter((e) => !(e in WITHOUT)),
      [],
      "an --allow-sys entry has no expectation here: show what needs it",
    );
    for (const entry of entries) {
      const rest = entries.filter((e) => e !== entry);
      const narrowed = flags.with(sysIndex, `--allow-sys=${rest.join(",")}`);
      const result = await inventory(narrowed);
      const expected = WITHOUT[entry]!;
      const denied = `Requires sys access to \\"${entry}\\"`;
      if (expected === "fails") {
        ok(result.code !== 0, `inventory succeeded without --allow-sys=${entry}`);
        ok(result.stderr.includes(`Requires sys access to "${entry}"`), result.stderr);
        continue;
      }
      equal(result.code, 0, result.stderr);
      ok(result.telemetry);
      equal(expected.field(result.telemetry), null, `${entry} removed but its field survived`);
      const lines = result.stderr.trim().split("\n");
      deepEqual(lines.length, 1, result.stderr);
      ok(lines[0]!.includes(`DEBUG Cannot read ${expected.source}; reporting null`), lines[0]);
      ok(lines[0]!.includes(denied), lines[0]);
      // Only that field is lost.
      const nulls = nullPaths(result.telemetry, "", []).filter((p) => !NULL_ON_LINUX.has(p));
      equal(nulls.length, 1, `${entry}: ${nulls.join(", ")}`);
    }
  },
});
