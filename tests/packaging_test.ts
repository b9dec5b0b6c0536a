import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parsePlist } from "plist";
import { DOMParser } from "@xmldom/xmldom";
import { ExitCode } from "../src/errors.ts";
import { defaultStateDir } from "../src/config/config.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { TARGETS } from "../tasks/build_all.ts";
import {
  BIN_PATH,
  ENROLL_PATH_UNIT,
  SERVICE_CACHE_DIR,
  STATE_DIR,
  TOKEN_PATH,
} from "../tasks/package/layout.ts";
import { findTool, repoPath, skipWithout, tempDir } from "./_support/helpers.ts";

const ROOT = repoPath();
const UNIT_PATH = join(ROOT, "packaging/systemd/oneconnect-agent.service");
const PLIST_PATH = join(ROOT, "packaging/launchd/com.oneconnect.agent.plist");
const PS1_PATH = join(ROOT, "packaging/windows/install-service.ps1");
const WINSW_PATH = join(ROOT, "packaging/windows/oneconnect-agent.xml");
/** Where the .deb/.rpm install the binary (nothing under /usr/local). */
const BINARY = "/usr/bin/oneconnect-agent";
/** macOS: /usr/bin is sealed (SIP); the pkg installs under /usr/local/bin. */
const MAC_BINARY = "/usr/local/bin/oneconnect-agent";

const FLAGS = await agentPermissionFlags();
const ALLOWED_ENV = new Set(
  FLAGS.find((f) => f.startsWith("--allow-env="))!.slice("--allow-env=".length).split(","),
);

const SYSTEMD_ANALYZE = findTool("systemd-analyze");
const STRACE = findTool("strace");
if (!SYSTEMD_ANALYZE) {
  console.warn(
    "SKIPPING systemd-analyze checks of packaging/systemd: systemd-analyze not found (apt-get install -y systemd)",
  );
}
if (!STRACE) console.warn("SKIPPING the syscall-filter check: strace not found");

/** A systemd unit as section -> key -> values (a key may repeat; an empty value resets it). */
type Unit = Map<string, Map<string, string[]>>;

/** Parses systemd's INI dialect: sections, `Key=Value`, `#`/`;` comments, `\` continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = line.match(/^\[([A-Za-z]+)\]$/);
    if (header) {
      assert.ok(!unit.has(header[1]!), `section [${header[1]}] repeated`);
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const kv = line.match(/^([A-Za-z][A-Za-z0-9]*)=(.*)$/);
    assert.ok(kv && section, `line ${i + 1} is not Key=Value inside a section: ${raw}`);
    const values = section.get(kv[1]!) ?? [];
    values.push(kv[2]!.trim());
    section.set(kv[1]!, values);
  }
  return unit;
}

function only(unit: Unit, section: string, key: string): string {
  const values = unit.get(section)?.get(key);
  assert.ok(values, `[${section}] ${key}= missing`);
  assert.equal(values.length, 1, `[${section}] ${key}= set ${values.length} times`);
  return values[0]!;
}

function environment(unit: Unit): Map<string, string> {
  const env = new Map<string, string>();
  for (const assignment of unit.get("Service")?.get("Environment") ?? []) {
    const m = assignment.match(/^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/);
    assert.ok(m, `Environment=${assignment} is not NAME=value`);
    env.set(m[1]!, m[2]!);
  }
  return env;
}

const unitText = await Deno.readTextFile(UNIT_PATH);

Deno.test("systemd unit runs the agent with the restart policy of its exit codes", () => {
  const unit = parseUnit(unitText);
  assert.deepEqual([...unit.keys()], ["Unit", "Service", "Install"]);
  assert.equal(only(unit, "Service", "ExecStart"), `${BINARY} run`);
  assert.equal(only(unit, "Service", "Restart"), "on-failure");
  assert.match(only(unit, "Service", "RestartSec"), /^[1-9]\d*s$/);
  const prevented = only(unit, "Service", "RestartPreventExitStatus").split(/\s+/).map(Number);
  // Exit codes that need an operator stop the restarts; 1 (internal) and 4 (unreachable) retry.
  assert.deepEqual(prevented, [
    ExitCode.usage,
    ExitCode.credentialRejected,
    ExitCode.notEnrolled,
    ExitCode.alreadyEnrolled,
  ]);
  assert.deepEqual(prevented, [2, 3, 5, 6]);
  assert.equal(only(unit, "Install", "WantedBy"), "multi-user.target");
  // A core dump would hold the private key and the bearer token.
  assert.equal(only(unit, "Service", "LimitCORE"), "0");
});

Deno.test("systemd units match the layout the packages install", async () => {
  const unit = parseUnit(unitText);
  assert.equal(BINARY, BIN_PATH);
  assert.equal(only(unit, "Service", "ExecStart"), `${BIN_PATH} run`);
  assert.equal(`/var/lib/${only(unit, "Service", "StateDirectory")}`, STATE_DIR);
  assert.equal(`/var/cache/${only(unit, "Service", "CacheDirectory")}`, SERVICE_CACHE_DIR);
  assert.doesNotMatch(unitText, /\/usr\/local/);
  // The path unit the packages enable watches the token's place and starts this service.
  const path = parseUnit(
    await Deno.readTextFile(join(ROOT, "packaging/systemd", ENROLL_PATH_UNIT)),
  );
  assert.equal(only(path, "Path", "Unit"), "oneconnect-agent.service");
  const watched = [...(path.get("Path") ?? new Map()).entries()]
    .filter(([k]) => k.startsWith("Path") && k !== "Unit").flatMap(([, v]) => v);
  assert.deepEqual(watched, [TOKEN_PATH]);
});

Deno.test("systemd unit confines the agent to its state directory", () => {
  const unit = parseUnit(unitText);
  const stateDir = defaultStateDir({ os: "linux", uid: () => 0, env: () => undefined });
  assert.equal(stateDir, "/var/lib/oneconnect-agent");
  assert.equal(only(unit, "Service", "StateDirectory"), "oneconnect-agent");
  assert.equal(only(unit, "Service", "StateDirectoryMode"), "0700");
  assert.equal(only(unit, "Service", "ReadWritePaths"), stateDir);
  assert.equal(environment(unit).get("ONECONNECT_STATE_DIR"), stateDir);
  for (
    const [key, value] of [
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["CapabilityBoundingSet", ""],
      ["PrivateDevices", "yes"],
      ["RestrictSUIDSGID", "yes"],
      ["UMask", "0077"],
    ]
  ) {
    assert.equal(only(unit, "Service", key!), value, `${key}=`);
  }
  // V8 needs writable+executable memory for its JIT.
  assert.equal(unit.get("Service")!.has("MemoryDenyWriteExecute"), false);
  assert.match(unitText, /# - MemoryDenyWriteExecute=yes: V8 JIT/);
  // Deno.networkInterfaces() needs a netlink socket.
  assert.ok(only(unit, "Service", "RestrictAddressFamilies").split(" ").includes("AF_NETLINK"));
  for (const name of environment(unit).keys()) {
    if (name.startsWith("ONECONNECT_")) {
      assert.ok(ALLOWED_ENV.has(name), `${name} not in --allow-env`);
    }
  }
});

Deno.test({
  name: "systemd-analyze verify accepts the unit and reports a typo",
  ignore: skipWithout(SYSTEMD_ANALYZE !== null),
  async fn() {
    await using tmp = await tempDir();
    const verify = async (text: string) => {
      // verify insists that ExecStart's binary exists: point it at an executable that does.
      const replaced = text.replace(`ExecStart=${BINARY} run`, `ExecStart=${Deno.execPath()} run`);
      assert.notEqual(replaced, text);
      const path = join(tmp.path, "oneconnect-agent.service");
      await Deno.writeTextFile(path, replaced);
      const out = await new Deno.Command(SYSTEMD_ANALYZE!, { args: ["verify", path] }).output();
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
    };
    assert.deepEqual(await verify(unitText), { code: 0, stderr: "" });
    // The harness can fail: verify reports unknown keys on stderr (its exit code stays 0).
    const typo = await verify(unitText.replace("ProtectHome=yes", "ProtectHomme=yes"));
    assert.match(typo.stderr, /Unknown key 'ProtectHomme' in section \[Service\]/);
  },
});

Deno.test({
  name: "systemd-analyze security rates the unit's exposure at most 3.0",
  ignore: skipWithout(SYSTEMD_ANALYZE !== null),
  async fn() {
    await using tmp = await tempDir();
    const path = join(tmp.path, "oneconnect-agent.service");
    await Deno.writeTextFile(path, unitText);
    const out = await new Deno.Command(SYSTEMD_ANALYZE!, {
      args: ["security", "--offline=yes", "--no-pager", path],
      env: { SYSTEMD_COLORS: "0" },
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const level = text.match(/Overall exposure level for oneconnect-agent\.service: ([\d.]+)/);
    assert.ok(level, text.slice(-400));
    assert.ok(Number(level[1]) <= 3.0, `exposure ${level[1]}`);
  },
});

/** Expands a systemd syscall group (recursively) into syscall names. */
async function expandSyscallGroup(group: string, seen = new Set<string>()): Promise<Set<string>> {
  const out = await new Deno.Command(SYSTEMD_ANALYZE!, { args: ["syscall-filter", group] })
    .output();
  assert.equal(out.code, 0, `unknown syscall group ${group}`);
  const names = new Set<string>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n").slice(1)) {
    const item = line.trim();
    if (item === "" || item.startsWith("#")) continue;
    if (item.startsWith("@")) {
      if (seen.has(item)) continue;
      seen.add(item);
      for (const n of await expandSyscallGroup(item, seen)) names.add(n);
    } else names.add(item);
  }
  return names;
}

// Exercises what `run` does: HTTP client and server sockets, inventory reads, state writes,
// ECDSA keys. Run by deno itself, so the syscalls are the runtime's, as in the compiled binary.
const SYSCALL_PROBE = `
const ac = new AbortController();
const srv = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
  () => new Response("ok"));
const r = await fetch("http://127.0.0.1:" + srv.addr.port + "/");
await r.text();
Deno.networkInterfaces(); Deno.osRelease(); Deno.systemMemoryInfo(); Deno.hostname();
Deno.loadavg(); Deno.osUptime(); Deno.uid();
const dir = Deno.args[0];
await Deno.mkdir(dir + "/state", { mode: 0o700 });
await Deno.writeTextFile(dir + "/state/a.tmp", "x", { mode: 0o600 });
await Deno.rename(dir + "/state/a.tmp", dir + "/state/a");
await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
await new Promise((resolve) => setTimeout(resolve, 20));
ac.abort();
await srv.finished;
`;

Deno.test({
  name: "systemd unit's SystemCallFilter admits every syscall the Deno runtime makes",
  ignore: skipWithout(SYSTEMD_ANALYZE !== null && STRACE !== null),
  async fn() {
    await using tmp = await tempDir();
    const probe = join(tmp.path, "probe.ts");
    const trace = join(tmp.path, "trace.txt");
    await Deno.writeTextFile(probe, SYSCALL_PROBE);
    const out = await new Deno.Command(STRACE!, {
      args: [
        "-f",
        "-qq",
        "-o",
        trace,
        Deno.execPath(),
        "run",
        "-A",
        "--no-config",
        probe,
        tmp.path,
      ],
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const used = new Set(
      [...(await Deno.readTextFile(trace)).matchAll(/^\d+\s+([a-z0-9_]+)\(/gm)].map((m) => m[1]!),
    );
    assert.ok(used.has("connect") && used.has("rename"), "the trace covers the probe");

    const allowed = new Set<string>();
    for (const line of parseUnit(unitText).get("Service")!.get("SystemCallFilter")!) {
      assert.ok(!line.startsWith("~"), "the filter is an allow list");
      for (const item of line.split(/\s+/)) {
        if (item.startsWith("@")) {
          for (const n of await expandSyscallGroup(item)) allowed.add(n);
        } else allowed.add(item);
      }
    }
    assert.deepEqual([...used].filter((s) => !allowed.has(s)).sort(), []);
  },
});

Deno.test("launchd plist restarts the agent after failures only and runs it at load", async () => {
  const plist = parsePlist(await Deno.readTextFile(PLIST_PATH)) as Record<string, unknown>;
  assert.equal(plist.Label, "com.oneconnect.agent");
  assert.deepEqual(plist.ProgramArguments, [MAC_BINARY, "run"]);
  assert.equal(plist.RunAtLoad, true);
  assert.deepEqual(plist.KeepAlive, { SuccessfulExit: false });
  assert.equal(typeof plist.ThrottleInterval, "number");
  assert.equal(plist.Umask, 0o077);
  const env = plist.EnvironmentVariables as Record<string, string>;
  assert.deepEqual(env, {
    ONECONNECT_STATE_DIR: defaultStateDir({ os: "darwin", uid: () => 0, env: () => undefined }),
  });
  for (const name of Object.keys(env)) assert.ok(ALLOWED_ENV.has(name));
  // A root-owned subfolder: /Library/Logs is group-writable (admin), a symlink there would make
  // root append to a file of someone else's choice.
  assert.equal(plist.StandardErrorPath, "/Library/Logs/OneConnect/oneconnect-agent.log");
  assert.equal(plist.StandardOutPath, plist.StandardErrorPath);
  const text = await Deno.readTextFile(PLIST_PATH);
  assert.ok(text.includes("install -d -o root -g wheel -m 0755 /Library/Logs/OneConnect"));
});

Deno.test("Windows install script runs the release binary at startup as SYSTEM", async () => {
  const script = await Deno.readTextFile(PS1_PATH);
  const windows = TARGETS.find((t) => t.triple === "x86_64-pc-windows-msvc")!;
  assert.ok(script.includes(`(Join-Path $PSScriptRoot '${windows.file}')`));
  assert.match(script, /New-ScheduledTaskTrigger -AtStartup/);
  assert.match(script, /-UserId 'NT AUTHORITY\\SYSTEM' -LogonType ServiceAccount/);
  assert.match(script, /-MultipleInstances IgnoreNew/);
  assert.match(script, /-ExecutionTimeLimit \(\[TimeSpan\]::Zero\)/);
  assert.match(script, /`"\$Exe`" run >> /);
  // The script explains why it does not register the binary with the SCM itself.
  assert.match(script, /error 1053/);
  assert.doesNotMatch(script, /^\s*&?\s*sc(\.exe)? create/m);
});

Deno.test("WinSW service definition runs the agent with restart on failure", async () => {
  const doc = new DOMParser().parseFromString(
    await Deno.readTextFile(WINSW_PATH),
    "text/xml",
  );
  const service = doc.documentElement!;
  assert.equal(service.nodeName, "service");
  const text = (name: string) => service.getElementsByTagName(name)[0]?.textContent?.trim();
  assert.equal(text("id"), "oneconnect-agent");
  assert.equal(text("executable"), "%BASE%\\oneconnect-agent.exe");
  assert.equal(text("arguments"), "run");
  assert.equal(service.getElementsByTagName("onfailure")[0]?.getAttribute("action"), "restart");
  const env = service.getElementsByTagName("env")[0]!;
  assert.ok(ALLOWED_ENV.has(env.getAttribute("name")!));
  assert.equal(env.getAttribute("value"), "%ProgramData%\\OneConnect\\Agent");
});

Deno.test("Windows install script protects the log folder: owner, no inheritance, read back", async () => {
  const script = await Deno.readTextFile(PS1_PATH);
  // A folder or parent someone else created first is refused, by owner SID.
  assert.match(script, /GetOwner\(\[Security\.Principal\.SecurityIdentifier\]\)/);
  assert.match(script, /Assert-OwnedByUs \$parent/);
  assert.match(script, /if \(Test-Path -LiteralPath \$Path\) \{ Assert-OwnedByUs \$Path \}/);
  assert.match(script, /\/setowner '\*S-1-5-32-544'/);
  assert.match(
    script,
    /\/inheritance:r \/grant:r '\*S-1-5-18:\(OI\)\(CI\)F' '\*S-1-5-32-544:\(OI\)\(CI\)F'/,
  );
  assert.match(script, /RemoveAccessRuleAll/);
  assert.match(script, /its ACL still grants/);
  assert.match(script, /^Protect-AgentFolder \$LogDir$/m);
  // The unprotected form of the first round must be gone.
  assert.doesNotMatch(script, /New-Item -ItemType Directory -Force -Path \$LogDir/);
});
