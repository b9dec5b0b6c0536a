import { deepEqual, equal, ok } from "node:assert/strict";
import { type Telemetry, TelemetrySchema } from "../src/telemetry/telemetry_schema.ts";
import { FILESYSTEM_FIELDS } from "../src/wire/telemetry_wire.ts";

/** `inventory`'s output, its labelled filesystems turned back into the wire's tuples. */
function parseInventory(stdout: string): Telemetry {
  return TelemetrySchema.parse(
    JSON.parse(
      stdout,
      (key, value) =>
        key === "mounts" && Array.isArray(value)
          ? value.map((m: Record<string, unknown>) => FILESYSTEM_FIELDS.map((f) => m[f]))
          : value,
    ),
  );
}
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { runAgent } from "./_support/helpers.ts";

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
  const telemetry = result.code === 0 ? parseInventory(result.stdout) : null;
  return { ...result, telemetry };
}

Deno.test({
  name: "inventory reports this host as the operating system's own tools see it",
  ignore: linuxOnly,
  async fn() {
    const result = await runAgent(["inventory"]);
    equal(result.stderr, "");
    equal(result.code, 0);
    const t = parseInventory(result.stdout);
    // Pretty JSON with two-space indentation and a final newline, filesystems labelled.
    equal(result.stdout, JSON.stringify(JSON.parse(result.stdout), null, 2) + "\n");

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

/** This machine's DMI identity (absent in containers; the serial is readable by root only). */
function dmi(name: string): string | null {
  try {
    const v = Deno.readTextFileSync(`/sys/class/dmi/id/${name}`).trim();
    return v === "" ? null : v;
  } catch {
    return null;
  }
}

const HOSTNAME_IS_FQDN = !linuxOnly && Deno.hostname().includes(".");

/**
 * Fields null on this Linux machine for a known reason: Deno 2.9 never measures the page cache
 * (and reading /proc/meminfo needs --allow-all); a container has no DMI; a bare host name has no
 * domain.
 */
const NULL_ON_LINUX = new Set([
  "metrics.memory.cached_bytes",
  ...(linuxOnly
    ? []
    : ["vendor", "model", "serial"].filter((f) =>
      dmi(f === "vendor" ? "sys_vendor" : `product_${f === "model" ? "name" : f}`) === null
    ).map((f) => `host.hardware_${f}`)),
  ...(HOSTNAME_IS_FQDN ? [] : ["host.fqdn", "host.domain"]),
]);
/** Of those, the ones whose absence the agent notes in one debug line each. */
const EXPECTED_DEBUG_SOURCES = [...NULL_ON_LINUX].filter((p) => p.startsWith("host.hardware_"))
  .map((p) => p.slice("host.".length));

function debugSources(stderr: string): string[] {
  return [...stderr.matchAll(/Cannot read (\S+); reporting null/g)].map((m) => m[1]!).sort();
}

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
    // At debug level every unavailable source leaves a line here: only the expected ones.
    deepEqual(debugSources(stderr), EXPECTED_DEBUG_SOURCES.sort(), stderr);
    equal(stderr.trim().split("\n").filter((l) => l !== "").length, EXPECTED_DEBUG_SOURCES.length);
    ok(telemetry);
    const nulls = nullPaths(telemetry, "", []).filter((p) => !NULL_ON_LINUX.has(p));
    deepEqual(nulls, []);
    ok(/^[0-9a-f]{32}$/.test(telemetry.host.machine_id ?? ""));
    ok((telemetry.host.network_interfaces ?? []).length > 0);
    // Present, not merely non-null: inventory waits for a CPU and network interval.
    ok(telemetry.metrics.cpu, "metrics.cpu missing");
    ok(telemetry.metrics.filesystems, "metrics.filesystems missing");
    ok(telemetry.metrics.network, "metrics.network missing");
  },
});

/**
 * What losing each `--allow-sys` entry must do to `inventory`: null fields, a loud failure, or
 * nothing on Linux for an entry only macOS and Windows use.
 */
const WITHOUT: Record<
  string,
  { fields: (t: Telemetry) => unknown[]; sources: string[] } | "fails" | "unused on linux"
> = {
  hostname: { fields: (t) => [t.host.hostname], sources: ["hostname"] },
  osRelease: { fields: (t) => [t.host.os_release], sources: ["os_release"] },
  // Boot time is now minus uptime.
  osUptime: {
    fields: (t) => [t.metrics.uptime_seconds, t.host.boot_time],
    sources: ["boot_time", "uptime_seconds"],
  },
  loadavg: { fields: (t) => [t.metrics.load_average], sources: ["load_average"] },
  networkInterfaces: {
    fields: (t) => [t.host.network_interfaces],
    sources: ["network_interfaces"],
  },
  systemMemoryInfo: { fields: (t) => [t.metrics.memory], sources: ["memory"] },
  // node:os cpus(): CPU times, model and MHz on macOS and Windows. Linux reads /proc/stat and
  // /proc/cpuinfo through head and never loads node:os (src/telemetry/host_inventory.ts).
  cpus: "unused on linux",
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
      if (expected === "unused on linux") {
        equal(result.code, 0, result.stderr);
        ok(result.telemetry);
        ok(result.telemetry.metrics.cpu, `without --allow-sys=${entry}: ${result.stderr}`);
        deepEqual(debugSources(result.stderr), EXPECTED_DEBUG_SOURCES.sort(), result.stderr);
        continue;
      }
      if (expected === "fails") {
        ok(result.code !== 0, `inventory succeeded without --allow-sys=${entry}`);
        ok(result.stderr.includes(`Requires sys access to "${entry}"`), result.stderr);
        continue;
      }
      equal(result.code, 0, result.stderr);
      ok(result.telemetry);
      for (const field of expected.fields(result.telemetry)) {
        equal(field, null, `${entry} removed but a field it feeds survived`);
      }
      const lines = result.stderr.trim().split("\n").filter((l) =>
        !EXPECTED_DEBUG_SOURCES.some((s) => l.includes(`Cannot read ${s};`))
      );
      deepEqual(debugSources(lines.join("\n")), expected.sources, result.stderr);
      equal(lines.length, expected.sources.length, result.stderr);
      for (const line of lines) ok(line.includes(denied), line);
      // Only those fields are lost.
      const nulls = nullPaths(result.telemetry, "", []).filter((p) => !NULL_ON_LINUX.has(p));
      equal(nulls.length, expected.sources.length, `${entry}: ${nulls.join(", ")}`);
    }
  },
});

function procNetDev(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of text.matchAll(/^\s*([^\s:]+):\s*(.*)$/gm)) {
    out.set(m[1]!, m[2]!.trim().split(/\s+/).map(Number));
  }
  return out;
}

async function readViaCat(path: string): Promise<string> {
  // The test runs with --allow-all, so it could read /proc itself; cat keeps it independent of
  // the agent's own reader.
  return await commandOutput("cat", [path]);
}

Deno.test({
  name: "inventory's v1.3 fields match /proc, df, /sys and the clock of this machine",
  ignore: linuxOnly,
  async fn() {
    const before = procNetDev(await readViaCat("/proc/net/dev"));
    const result = await runAgent(["inventory"]);
    const after = procNetDev(await readViaCat("/proc/net/dev"));
    equal(result.code, 0, result.stderr);
    const t = parseInventory(result.stdout);
    const h = t.host;

    const cpuinfo = await readViaCat("/proc/cpuinfo");
    equal(h.cpu_model, /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? null);
    const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)$/m.exec(cpuinfo)?.[1]);
    if (Number.isFinite(mhz)) {
      ok(Math.abs((h.cpu_mhz ?? 0) - mhz) <= mhz * 0.2, `cpu_mhz ${h.cpu_mhz} vs ${mhz}`);
    }
    equal(h.hardware_vendor, dmi("sys_vendor"));
    equal(h.hardware_model, dmi("product_name"));
    equal(h.hardware_serial, dmi("product_serial"));
    const btime = Number(/^btime (\d+)$/m.exec(await readViaCat("/proc/stat"))?.[1]) * 1000;
    ok(Math.abs(Date.parse(h.boot_time ?? "") - btime) <= 3000, `boot_time ${h.boot_time}`);
    const zone = await Deno.realPath("/etc/localtime").catch(() => "");
    ok(
      h.time_zone !== null &&
        (zone.endsWith(`/${h.time_zone}`) || (h.time_zone === "UTC" && /UTC$/.test(zone)) ||
          (h.time_zone === "UTC" && (await commandOutput("date", ["+%Z"])) === "UTC")),
      `time_zone ${h.time_zone} vs /etc/localtime -> ${zone}`,
    );
    equal(h.agent_platform, Deno.build.target);
    const docker = await Deno.stat("/.dockerenv").then(() => true, () => false);
    if (docker) deepEqual(h.virtualization, { kind: "container", technology: "docker" });
    else ok(h.virtualization !== null);

    const meminfo = await readViaCat("/proc/meminfo");
    const swapUsed = (meminfoKb(meminfo, "SwapTotal") - meminfoKb(meminfo, "SwapFree")) * 1024;
    ok(Math.abs((t.metrics.memory?.swap_used_bytes ?? -1e12) - swapUsed) <= 64 * 1024 * 1024);

    // Threads move while the agent runs: the kernel's own count, read just after, within 2x.
    const threads = Number(/ \d+\/(\d+) /.exec(await readViaCat("/proc/loadavg"))?.[1]);
    const reported = t.metrics.threads ?? 0;
    ok(reported >= threads / 2 && reported <= threads * 2, `threads ${reported} vs ${threads}`);

    const cpu = t.metrics.cpu;
    ok(cpu, "cpu missing");
    const shares = [cpu.user, cpu.system, cpu.idle, cpu.iowait, cpu.steal];
    ok(shares.every((v) => v !== null), `a /proc/stat share is null: ${JSON.stringify(cpu)}`);
    const sum = shares.reduce((a, v) => a! + v!, 0)!;
    ok(Math.abs(sum - 100) <= 0.5, `cpu shares sum to ${sum}`);

    // df's own view of the root filesystem, in bytes.
    const df = (await commandOutput("df", ["-B1", "--output=size,avail,itotal", "/"]))
      .split("\n")[1]!.trim().split(/\s+/).map(Number);
    // People read labelled filesystems; the wire (parsed back above) keeps tuples.
    ok(/"mount": "\/",\n\s+"type": "[^"]+",\n\s+"total_bytes": \d+/.test(result.stdout));
    const root = t.metrics.filesystems?.mounts.find(([mount]) => mount === "/");
    ok(root, "no / in filesystems");
    equal(root[2], df[0]);
    ok(Math.abs((root[4] ?? 0) - df[1]!) <= 256 * 1024 * 1024, `avail ${root[4]} vs ${df[1]}`);
    equal(root[5], df[2] === 0 ? null : df[2]);
    for (const [mount, type] of t.metrics.filesystems?.mounts ?? []) {
      ok(!["tmpfs", "proc", "sysfs", "overlay", "devtmpfs"].includes(type), `${type} ${mount}`);
    }

    // Traffic over inventory's sampling second fits within the counters around the whole run.
    const net = t.metrics.network;
    ok(net, "network missing");
    for (const [name, traffic] of Object.entries(net.interfaces)) {
      ok(name !== "lo");
      ok(traffic, `${name} null`);
      const b = before.get(name)!, a = after.get(name)!;
      ok(traffic[0] <= a[0]! - b[0]! && traffic[3] <= a[8]! - b[8]!, `${name}: ${traffic}`);
    }
    for (const [name, counters] of before) {
      if (name !== "lo" && counters[0]! > 0) ok(name in net.interfaces, `${name} missing`);
    }
  },
});

/** What losing each `--allow-run` entry that Linux uses does to `inventory`. */
const WITHOUT_RUN: Record<string, { sources: string[]; gone: (t: Telemetry) => unknown[] }> = {
  "/usr/bin/df": { sources: ["filesystems"], gone: (t) => [t.metrics.filesystems] },
  "/usr/bin/head": {
    sources: ["hardware", "network"],
    // Virtualization survives in a Docker container: /.dockerenv is read directly.
    gone: (t) => [t.metrics.network, t.host.hardware_vendor],
  },
};

Deno.test({
  name: "every Linux --allow-run entry in the shared permissions is needed by inventory",
  ignore: linuxOnly,
  async fn() {
    const flags = await agentPermissionFlags();
    const runIndex = flags.findIndex((f) => f.startsWith("--allow-run="));
    const entries = flags[runIndex]!.slice("--allow-run=".length).split(",");
    for (const [entry, expected] of Object.entries(WITHOUT_RUN)) {
      ok(entries.includes(entry), `${entry} not in --allow-run`);
      const narrowed = flags.with(
        runIndex,
        `--allow-run=${entries.filter((e) => e !== entry).join(",")}`,
      );
      const result = await inventory(narrowed);
      equal(result.code, 0, result.stderr);
      ok(result.telemetry);
      for (const v of expected.gone(result.telemetry)) ok(v === null || v === undefined, entry);
      for (const source of expected.sources) {
        ok(
          new RegExp(`Cannot read ${source}; reporting null.*Requires run access`).test(
            result.stderr,
          ),
          `${entry}: ${result.stderr}`,
        );
      }
    }
  },
});
