import assert from "node:assert/strict";
import { join } from "node:path";
import { createCsr, exportPrivateKeyPem, generateAgentKeyPair } from "../src/trust/certificates.ts";
import { NotEnrolledError, UsageError } from "../src/errors.ts";
import { denoFileSystem, type FileSystem } from "../src/file_system.ts";
import { type Identity, IdentityStore } from "../src/state/identity_store.ts";
import { type CommandRunner, ICACLS_PATH, POWERSHELL_PATH } from "../src/state/windows_acl.ts";
import { shellQuote } from "../src/state/ownership.ts";
import { clearSecrets, type Logger, redact } from "../src/log.ts";
import { createDevCa, issueAgentCertificate, parseCsr } from "../tasks/dev_platform/dev_ca.ts";
import { rejectsWith, tempDir } from "./_support/helpers.ts";

const posix = Deno.build.os !== "windows";

async function makeIdentity(overrides: Partial<Identity> = {}): Promise<Identity> {
  const ca = await createDevCa();
  const keys = await generateAgentKeyPair();
  const now = Date.now();
  const cert = await issueAgentCertificate(ca, {
    agentId: "agent-7",
    csr: await parseCsr(await createCsr(keys, "host-7")),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
  });
  return {
    version: 1,
    agent_id: "agent-7",
    platform_url: "https://platform.example/",
    certificate: cert.toString("pem"),
    ca_certificates: [ca.certPem],
    bootstrap_ca_certificates: [],
    private_key: await exportPrivateKeyPem(keys.privateKey),
    service_account_token: `sat-${crypto.randomUUID()}`,
    machine_id: "0123456789abcdef",
    enrolled_at: new Date(now).toISOString(),
    heartbeat_interval_seconds: 60,
    certificate_not_before: cert.notBefore.toISOString(),
    certificate_not_after: cert.notAfter.toISOString(),
    ...overrides,
  };
}

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    debug() {},
    info() {},
    warn(msg) {
      warnings.push(msg);
    },
    error() {},
    enabled: () => true,
  };
}

const failure = (promise: Promise<unknown>) => rejectsWith(promise, Error);

Deno.test("identity store saves atomically with 0700/0600 and loads the same identity", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "nested", "state");
  const store = new IdentityStore(stateDir);
  assert.equal(await store.exists(), false);
  const identity = await makeIdentity();
  await store.save(identity);
  assert.equal(await store.exists(), true);
  assert.equal(store.identityPath, join(stateDir, "identity.json"));
  assert.deepEqual(await store.load(), identity);
  if (posix) {
    assert.equal((await Deno.stat(stateDir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(store.identityPath)).mode! & 0o777, 0o600);
  }
  const names = [];
  for await (const entry of Deno.readDir(stateDir)) names.push(entry.name);
  assert.deepEqual(names, ["identity.json"]);
});

Deno.test("identity store load registers the key and token for redaction", async () => {
  await using dir = await tempDir();
  const identity = await makeIdentity();
  await new IdentityStore(dir.path).save(identity);
  clearSecrets();
  const line = `heartbeat with ${identity.service_account_token}`;
  assert.equal(redact(line), line);
  await new IdentityStore(dir.path).load();
  assert.equal(redact(line), "heartbeat with [REDACTED]");
  clearSecrets();
});

Deno.test("identity store load without identity is NotEnrolledError", async () => {
  await using dir = await tempDir();
  const error = await failure(new IdentityStore(dir.path).load());
  assert.ok(error instanceof NotEnrolledError);
  assert.match(error.message, /Not enrolled: no identity at ".*identity\.json"/);
});

Deno.test({
  name: "identity store refuses a symlinked or non-regular identity file, naming it",
  ignore: !posix,
  fn: async () => {
    await using dir = await tempDir();
    const store = new IdentityStore(join(dir.path, "state"));
    await store.ensureStateDir();
    const elsewhere = join(dir.path, "elsewhere.json");
    await Deno.writeTextFile(elsewhere, JSON.stringify(await makeIdentity()));
    await Deno.symlink(elsewhere, store.identityPath);
    const symlinked = await failure(store.load());
    assert.ok(symlinked instanceof UsageError);
    assert.ok(symlinked.message.includes(JSON.stringify(store.identityPath)));
    assert.match(symlinked.message, /symbolic link/);

    await Deno.remove(store.identityPath);
    await Deno.mkdir(store.identityPath);
    const directory = await failure(store.load());
    assert.ok(directory instanceof UsageError);
    assert.match(directory.message, /"[^"]*identity\.json": it is not a file/);
  },
});

Deno.test("identity store reports truncated or empty files as corrupt and leaves them", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(dir.path);
  const full = JSON.stringify(await makeIdentity());
  for (
    const [content, why] of [[full.slice(0, 200), /not valid JSON \(truncated\?\)/], [
      "",
      /file is empty/,
    ]] as const
  ) {
    await Deno.writeTextFile(store.identityPath, content, { mode: 0o600 });
    const error = await failure(store.load());
    assert.ok(error instanceof UsageError);
    assert.equal(error.exitCode, 2);
    assert.ok(
      error.message.startsWith(`Corrupt identity file ${JSON.stringify(store.identityPath)}`),
    );
    assert.match(error.message, why);
    assert.match(error.message, /--force/);
    assert.equal(await Deno.readTextFile(store.identityPath), content);
  }
});

Deno.test("identity store loads files from before chains were stored and checks intermediates", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(dir.path);
  const identity = await makeIdentity();
  // An identity.json written by an older agent: no intermediate_certificates at all.
  await Deno.writeTextFile(store.identityPath, JSON.stringify(identity), { mode: 0o600 });
  const old = await store.load();
  assert.equal(old.intermediate_certificates, undefined);
  const intermediate = (await createDevCa({ commonName: "Issuing CA" })).certPem;
  await store.save({ ...identity, intermediate_certificates: [intermediate] });
  assert.deepEqual((await store.load()).intermediate_certificates, [intermediate]);
  await Deno.writeTextFile(
    store.identityPath,
    JSON.stringify({ ...identity, intermediate_certificates: ["junk"] }),
  );
  const bad = await failure(store.load());
  assert.match(bad.message, /^Corrupt identity file .*"intermediate_certificates\.0"/);
});

Deno.test("identity store names the bad field but never shows its value", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(dir.path);
  const identity = await makeIdentity();
  const { agent_id: _dropped, ...withoutId } = identity;
  await Deno.writeTextFile(store.identityPath, JSON.stringify(withoutId));
  const missing = await failure(store.load());
  assert.match(missing.message, /"agent_id"/);

  await Deno.writeTextFile(
    store.identityPath,
    JSON.stringify({ ...identity, private_key: 42, service_account_token: "" }),
  );
  const bad = await failure(store.load());
  assert.ok(bad instanceof UsageError);
  assert.match(bad.message, /"private_key"/);
  assert.ok(!bad.message.includes(identity.service_account_token));
});

Deno.test("identity store refuses a key that does not match the certificate", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(dir.path);
  const identity = await makeIdentity();
  const other = await generateAgentKeyPair();
  await Deno.writeTextFile(
    store.identityPath,
    JSON.stringify({ ...identity, private_key: await exportPrivateKeyPem(other.privateKey) }),
  );
  const error = await failure(store.load());
  assert.ok(error instanceof UsageError);
  assert.match(error.message, /private_key does not match the certificate/);
  assert.ok(error.message.includes(store.identityPath));
});

Deno.test({
  name: "identity store audit tightens loose modes with a warning naming path and old mode",
  ignore: !posix,
  fn: async () => {
    await using dir = await tempDir();
    const logger = recordingLogger();
    const store = new IdentityStore(join(dir.path, "state"), { logger });
    await store.save(await makeIdentity());
    const statusPath = store.secretFilePath("status.json");
    await Deno.writeTextFile(statusPath, "{}", { mode: 0o600 });
    await Deno.chmod(store.stateDir, 0o755);
    await Deno.chmod(store.identityPath, 0o644);
    await Deno.chmod(statusPath, 0o640);

    const repairs = await store.auditPermissions();
    assert.deepEqual(repairs, [
      { path: store.stateDir, old_mode: "0755", new_mode: "0700" },
      { path: store.identityPath, old_mode: "0644", new_mode: "0600" },
      { path: statusPath, old_mode: "0640", new_mode: "0600" },
    ]);
    assert.equal((await Deno.stat(store.stateDir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(store.identityPath)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(statusPath)).mode! & 0o777, 0o600);
    assert.equal(logger.warnings.length, 3);
    assert.ok(logger.warnings[1]!.includes(JSON.stringify(store.identityPath)));
    assert.match(logger.warnings[1]!, /from 0644 to 0600.*exposed/);
    assert.deepEqual(await store.auditPermissions(), []);
    assert.equal(logger.warnings.length, 3);
  },
});

Deno.test({
  name: "identity store audit gives the exact chmod fix when it cannot tighten",
  ignore: !posix,
  fn: async () => {
    await using dir = await tempDir();
    const stateDir = join(dir.path, "Application Support");
    const notOwner: FileSystem = {
      ...denoFileSystem,
      chmod: () => Promise.reject(new Deno.errors.PermissionDenied("Operation not permitted")),
    };
    await new IdentityStore(stateDir).save(await makeIdentity());
    await Deno.chmod(join(stateDir, "identity.json"), 0o604);
    const error = await failure(new IdentityStore(stateDir, { fs: notOwner }).auditPermissions());
    assert.ok(error instanceof UsageError);
    assert.ok(
      error.message.endsWith(`run: chmod 600 '${join(stateDir, "identity.json")}'`),
      error.message,
    );
    assert.match(error.message, /Insecure permissions 0604/);
  },
});

Deno.test({
  name: "identity store audit refuses a symlinked secret file",
  ignore: !posix,
  fn: async () => {
    await using dir = await tempDir();
    const store = new IdentityStore(join(dir.path, "state"));
    await store.ensureStateDir();
    const target = join(dir.path, "world-readable");
    await Deno.writeTextFile(target, "x", { mode: 0o644 });
    await Deno.symlink(target, store.secretFilePath("status.json"));
    const error = await failure(store.auditPermissions());
    assert.ok(error instanceof UsageError);
    assert.match(error.message, /status\.json": it is a symbolic link/);
    assert.equal((await Deno.stat(target)).mode! & 0o777, 0o644);
  },
});

Deno.test("identity store secures and audits the directory ACL on Windows", async () => {
  await using dir = await tempDir();
  const stateDir = join(dir.path, "OneConnect");
  const calls: string[] = [];
  let acl = ["NT AUTHORITY\\SYSTEM:(OI)(CI)(F)", "BUILTIN\\Administrators:(OI)(CI)(F)"];
  const runCommand: CommandRunner = (command, args, env) => {
    calls.push(`${command} ${args.slice(1).join(" ")}`.trim());
    if (command === POWERSHELL_PATH && args.join(" ").includes("CreateDirectory")) {
      Deno.mkdirSync(env!.ONECONNECT_ACL_PATH!);
      return Promise.resolve({ success: true, stdout: "", stderr: "" });
    }
    if (command === POWERSHELL_PATH) {
      return Promise.resolve({ success: true, stdout: `S-1-5-32-544\t${stateDir}`, stderr: "" });
    }
    const stdout = args.length > 1
      ? "processed file"
      : `${stateDir} ${acl.join(`\r\n${" ".repeat(stateDir.length + 1)}`)}\r\n\r\n`;
    return Promise.resolve({ success: true, stdout, stderr: "" });
  };
  const store = new IdentityStore(stateDir, { os: "windows", runCommand });
  await store.ensureStateDir();
  assert.deepEqual(calls.filter((c) => c.startsWith(ICACLS_PATH)), [
    `${ICACLS_PATH} /setowner *S-1-5-32-544`,
    `${ICACLS_PATH} /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F`,
    ICACLS_PATH,
    ICACLS_PATH,
  ]);
  assert.deepEqual(await store.auditPermissions(), []);

  // Someone granted themselves access since: every start refuses it.
  acl = [...acl, "DESKTOP-7Q2K9LM\\mallory:(OI)(CI)(F)"];
  const error = await failure(store.auditPermissions());
  assert.ok(error instanceof UsageError);
  assert.match(error.message, /its ACL grants "DESKTOP-7Q2K9LM\\\\mallory"/);
});

Deno.test("identity store keeps the previous identity when a save fails", async () => {
  await using dir = await tempDir();
  const first = await makeIdentity();
  await new IdentityStore(dir.path).save(first);
  const diskFull: FileSystem = {
    ...denoFileSystem,
    writeFileAtomic: () => Promise.reject(new Error("No space left on device (os error 28)")),
  };
  const error = await failure(
    new IdentityStore(dir.path, { fs: diskFull }).save(await makeIdentity({ agent_id: "b" })),
  );
  assert.ok(error instanceof UsageError);
  assert.match(error.message, /No space left.*previous file, if any, is unchanged/);
  assert.deepEqual(await new IdentityStore(dir.path).load(), first);
});

Deno.test("identity store remove deletes identity and status and lists them", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(dir.path);
  await store.save(await makeIdentity());
  assert.deepEqual(await store.remove(), [store.identityPath]);
  await store.save(await makeIdentity());
  await Deno.writeTextFile(store.secretFilePath("status.json"), "{}");
  await Deno.writeTextFile(store.secretFilePath("agent.json"), "{}");
  assert.deepEqual(await store.remove(), [store.identityPath, store.secretFilePath("status.json")]);
  assert.equal(await store.exists(), false);
  assert.equal(await Deno.readTextFile(store.secretFilePath("agent.json")), "{}");
  assert.deepEqual(await store.remove(), []);
});

Deno.test("shellQuote leaves plain paths bare and quotes the rest", () => {
  assert.equal(
    shellQuote("/var/lib/oneconnect-agent/identity.json"),
    "/var/lib/oneconnect-agent/identity.json",
  );
  assert.equal(shellQuote("/Library/Application Support/x"), "'/Library/Application Support/x'");
  assert.equal(shellQuote("/tmp/it's"), `'/tmp/it'\\''s'`);
});

Deno.test("identity store removes temp files left by a killed write, never a fresh one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new IdentityStore(dir);
    await store.ensureStateDir();
    const stale = join(dir, ".identity.json.1a2b3c.tmp");
    const staleStatus = join(dir, ".status.json.ff00.tmp");
    const fresh = join(dir, ".identity.json.abcdef.tmp");
    const other = join(dir, ".identity.json.backup");
    for (const path of [stale, staleStatus, fresh, other]) {
      await Deno.writeTextFile(path, "-----BEGIN PRIVATE KEY-----", { mode: 0o600 });
    }
    const old = new Date(Date.now() - 5 * 60_000);
    await Deno.utime(stale, old, old);
    await Deno.utime(staleStatus, old, old);
    await store.auditPermissions();
    const left = new Set<string>();
    for await (const e of Deno.readDir(dir)) left.add(e.name);
    assert.ok(!left.has(".identity.json.1a2b3c.tmp") && !left.has(".status.json.ff00.tmp"));
    assert.ok(left.has(".identity.json.abcdef.tmp"), "a temp file still being written is kept");
    assert.ok(left.has(".identity.json.backup"), "only the writer's own temp names are touched");
    const removed = await store.remove();
    assert.ok(removed.includes(fresh), "unenroll removes every temp file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
