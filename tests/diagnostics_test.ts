import assert from "node:assert/strict";
import { join } from "node:path";
import { agentLogsEntry } from "../src/diagnostics/agent_logs.ts";
import { environmentEntry } from "../src/diagnostics/environment.ts";
import { permissionAuditEntry } from "../src/diagnostics/permission_audit.ts";
import { safeMessage, safeUrl, withheldConfigValues } from "../src/diagnostics/sanitize.ts";
import { versionsEntry } from "../src/diagnostics/versions.ts";
import { configEntry } from "../src/diagnostics/effective_config.ts";
import { statusEntries } from "../src/diagnostics/status_entries.ts";
import { denoFileSystem } from "../src/file_system.ts";
import { resolveConfig } from "../src/config/config.ts";
import { createLogger } from "../src/log.ts";
import { denoOwnershipHost } from "../src/state/ownership.ts";
import { emptyStatus } from "../src/state/status_store.ts";
import { denoCommandRunner } from "../src/state/windows_acl.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { tempDir } from "./_support/helpers.ts";

/** The `agent_logs.txt` entry of a Linux host whose journal holds `text`. */
async function journalEntry(text: string) {
  const { entries } = await agentLogsEntry({
    os: "linux",
    env: () => undefined,
    journalctlPaths: ["/usr/bin/journalctl"],
    runCommand: () => Promise.resolve({ success: true, code: 0, stdout: text, stderr: "" }),
  });
  assert.equal(entries.length, 1);
  return entries[0]!;
}

Deno.test("agent log filter: keeps the logger's own text and JSON lines, drops everything else", async () => {
  const lines: string[] = [];
  for (const format of ["text", "json"] as const) {
    const logger = createLogger({ level: "debug", format, write: (l) => lines.push(l) });
    logger.debug("Starting", { n: 1 });
    logger.info("Heartbeat accepted");
    logger.warn("Slow answer", { ms: 1200 });
    logger.error("Cannot reach the platform");
  }
  const own = [...lines, "error: Not enrolled: no identity"];
  const foreign = [
    "Started oneconnect-agent.service - OneConnect endpoint agent.",
    "thread 'main' panicked at src/lib.rs:1:1",
    '{"ts":"2026-12-06T10:00:00.000Z","level":"notice","msg":"x"}',
    '{"level":"info","msg":"no ts"}',
    "2026-12-06 10:00:00 INFO something else",
    "    at async main (file:///x.js:1:1)",
  ];
  const all = await journalEntry([...own, ...foreign, ""].join("\n"));
  assert.deepEqual(all.content, `${own.join("\n")}\n`);
  assert.match(
    all.source,
    new RegExp(`: ${own.length} agent line\\(s\\) kept, ${foreign.length} other`),
  );
  const kept = await journalEntry(
    `${lines[1]}\nnoise\n2026-12-06T10:00:00.000Z WARN  retry password=hunter22\n`,
  );
  assert.match(kept.source, /: 2 agent line\(s\) kept, 1 other line\(s\) dropped$/);
  const keptLines = (kept.content as string).trimEnd().split("\n");
  assert.equal(keptLines.length, 2);
  assert.match(keptLines[1]!, /password=\[REDACTED\]/);
});

Deno.test("agent logs: the Windows service log paths follow ProgramData", async () => {
  const read: string[] = [];
  await agentLogsEntry({
    os: "windows",
    env: (n) => n === "ProgramData" ? "D:\\PD" : undefined,
    readTail: (path) => {
      read.push(path);
      return Promise.resolve("");
    },
  });
  assert.deepEqual(read, [
    "D:\\PD\\OneConnect\\Logs\\oneconnect-agent-service.err.log",
    "D:\\PD\\OneConnect\\Logs\\oneconnect-agent-service.out.log",
  ]);
});

Deno.test("safeUrl and safeMessage drop user info, query and fragment", () => {
  assert.equal(safeUrl("http://u:p4ss@proxy:3128/x?sig=abc#f"), "http://proxy:3128/x");
  assert.equal(safeUrl("not a url"), "<not a URL>");
  assert.equal(
    safeMessage('Refusing "https://h:1/?token=zzzzzzzz&a=qqqqqq" and https://u:pw@h/p?x=y\nnext'),
    'Refusing "https://h:1/" and https://h/p next',
  );
});

Deno.test("a configuration error keeps field names and withholds the rejected value", async () => {
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o700);
  await Deno.writeTextFile(join(dir.path, "agent.json"), '{"log_level":"s3cr3t-value"}', {
    mode: 0o600,
  });
  const error = await resolveConfig({ stateDir: dir.path }).then(() => null, (e) => e);
  assert.match(error.message, /s3cr3t-value/, "precondition: the message quotes the value");
  const shown = withheldConfigValues(safeMessage(error.message));
  assert.doesNotMatch(shown, /s3cr3t/);
  assert.match(shown, /"log_level" has a value \(withheld\): /);
});

Deno.test("config entry: each setting with its source; agent.json unknown keys by name", async () => {
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o700);
  await Deno.writeTextFile(
    join(dir.path, "agent.json"),
    '{"proxy_url":"http://u:pw1234567@p:3128","timeout_seconds":30}',
    { mode: 0o600 },
  );
  const config = await resolveConfig({ stateDir: dir.path, logLevel: "debug" }, {
    env: (n) => n === "ONECONNECT_PLATFORM_URL" ? "https://platform.example/" : undefined,
    os: "linux",
    uid: () => Deno.uid(),
  });
  const { entry } = await configEntry(config, undefined, denoFileSystem);
  const settings = (entry.content as { settings: Record<string, unknown> }).settings;
  assert.deepEqual(settings.platformUrl, {
    value: "https://platform.example/",
    source: "environment ONECONNECT_PLATFORM_URL",
  });
  assert.deepEqual(settings.logLevel, { value: "debug", source: "flag --log-level" });
  assert.deepEqual(settings.proxyUrl, { value: "http://p:3128/", source: "agent.json proxy_url" });
  assert.deepEqual(settings.timeoutSeconds, { value: 30, source: "agent.json timeout_seconds" });
  assert.deepEqual(settings.auth, { value: "bearer", source: "default" });
  assert.doesNotMatch(JSON.stringify(entry.content), /pw1234567/);

  // A value the system file gave is named by that file, never as a default.
  const fromSystem = await configEntry(
    {
      ...config,
      systemConfigFile: "/etc/oneconnect-agent/agent.json",
      intervalSeconds: 45,
      sources: { ...config.sources, intervalSeconds: "system" },
    },
    undefined,
    denoFileSystem,
  );
  assert.deepEqual(
    (fromSystem.entry.content as { settings: Record<string, unknown> }).settings.intervalSeconds,
    { value: 45, source: "/etc/oneconnect-agent/agent.json interval_seconds" },
  );

  await Deno.writeTextFile(join(dir.path, "agent.json"), '{"auth":"mtls","my_secret":"x1y2z3w4"}');
  const listed = await configEntry(config, "ignored", denoFileSystem);
  assert.deepEqual((listed.entry.content as { agent_json: unknown }).agent_json, {
    present: true,
    keys: ["auth", "my_secret"],
    unknown_keys: ["my_secret"],
  });
  assert.doesNotMatch(JSON.stringify(listed.entry.content), /x1y2z3w4/);
});

Deno.test("the variables diagnostics reports are exactly those the agent may read", async () => {
  const flags = await agentPermissionFlags();
  const allowed = flags.find((f) => f.startsWith("--allow-env="))!.slice(12).split(",").sort();
  // Every variable set: the entries list each variable they would report.
  const everything = () => "x";
  const environment = environmentEntry(everything, { names: [], all: [] }).content as {
    set: string[];
  };
  const versions = versionsEntry({ env: everything, osRelease: () => "", osUptime: () => 0 })
    .entry.content as { service_manager_variables_set: string[] };
  assert.deepEqual(
    [...environment.set, ...versions.service_manager_variables_set].sort(),
    allowed,
  );
});

Deno.test("environment entry: names only, proxies without user info, trust variables as at start", () => {
  const env: Record<string, string> = {
    ONECONNECT_ENROLLMENT_TOKEN: "tok-should-not-appear",
    HTTPS_PROXY: "admin:pw-should-not-appear@proxy.example:3128",
    no_proxy: "localhost,.internal",
    DENO_TLS_CA_STORE: ",",
  };
  const entry = environmentEntry((n) => env[n], {
    names: ["DENO_CERT"],
    all: ["DENO_CERT", "DENO_TLS_CA_STORE"],
  });
  const text = JSON.stringify(entry.content);
  assert.doesNotMatch(text, /should-not-appear/);
  assert.deepEqual(entry.content, {
    set: ["ONECONNECT_ENROLLMENT_TOKEN", "HTTPS_PROXY", "no_proxy", "DENO_CERT"],
    proxy: { HTTPS_PROXY: "http://proxy.example:3128/", no_proxy: "localhost,.internal" },
  });
});

Deno.test("versions: service manager from its variables; what cannot be read is listed", () => {
  const serviceManager = (env: (name: string) => string | undefined) =>
    (versionsEntry({ env, osRelease: () => "", osUptime: () => 0 }).entry.content as {
      service_manager: string | null;
    }).service_manager;
  assert.equal(serviceManager((n) => n === "INVOCATION_ID" ? "abc" : undefined), "systemd");
  assert.equal(serviceManager((n) => n === "XPC_SERVICE_NAME" ? "0" : undefined), null);
  assert.equal(
    serviceManager((n) => n === "XPC_SERVICE_NAME" ? "com.oneconnect.agent" : undefined),
    "launchd",
  );
  const { entry, unreadable } = versionsEntry({
    env: () => undefined,
    osRelease: () => "6.1.0",
    osUptime: () => {
      throw new Deno.errors.NotCapable("Requires sys access to osUptime");
    },
  });
  assert.equal((entry.content as { kernel: string }).kernel, "6.1.0");
  assert.equal((entry.content as { uptime_seconds: null }).uptime_seconds, null);
  assert.equal(unreadable[0]?.what, "uptime");
});

Deno.test("status entry: only the fields the schema names, messages redacted", () => {
  const status = {
    ...emptyStatus("agent-1"),
    last_error: {
      kind: "network",
      http_status: null,
      code: null,
      message: "proxy http://u:pw-xyz-123@p:1/ said token=abcdefgh",
    },
    planted_by_someone: "leak-me-not",
  };
  const shown = statusEntries(status, null, 0)[0]!.content as Record<string, unknown>;
  assert.equal("planted_by_someone" in shown, false);
  assert.doesNotMatch(JSON.stringify(shown), /pw-xyz-123|abcdefgh|leak-me-not/);
  assert.equal(shown.agent_id, "agent-1");
});

Deno.test("permission audit: modes and owners, never contents, and nothing is tightened", {
  ignore: Deno.build.os === "windows",
}, async () => {
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o700);
  const loose = join(dir.path, "status.json");
  await Deno.writeTextFile(loose, '{"secret":"content-must-not-appear"}', { mode: 0o644 });
  await Deno.chmod(loose, 0o644);
  await Deno.symlink("/etc/passwd", join(dir.path, "identity.json"));
  const { entry, unreadable } = await permissionAuditEntry(dir.path, {
    fs: denoFileSystem,
    ownership: denoOwnershipHost,
    os: Deno.build.os,
    runCommand: denoCommandRunner,
  });
  assert.deepEqual(unreadable, []);
  const content = entry.content as {
    directory: { mode: string };
    entries: Array<Record<string, unknown>>;
  };
  assert.equal(content.directory.mode, "0700");
  const status = content.entries.find((e) => e.name === "status.json")!;
  assert.equal(status.mode, "0644");
  assert.match(String(status.run_would), /tighten it to 0600/);
  assert.match(String(status.acl), /group class bits 4/);
  const link = content.entries.find((e) => e.name === "identity.json")!;
  assert.equal(link.kind, "symlink");
  assert.match(String(link.run_would), /refuse/);
  assert.doesNotMatch(JSON.stringify(entry.content), /content-must-not-appear|root:x:/);
  assert.equal((await Deno.stat(loose)).mode! & 0o777, 0o644, "the audit changed a mode");
});
