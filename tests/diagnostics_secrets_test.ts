/**
 * The secret test of `diagnostics` (issue 30): canaries planted everywhere a secret can be, the
 * bundle built through the CLI, unpacked by GNU tar, and every entry searched for every canary in
 * every encoding. As root and as nobody (a state directory nobody owns, and root's own that
 * nobody cannot read). The journal is faked by bind-mounting a script over /usr/bin/journalctl in
 * a private mount namespace, so the agent runs its production path.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { CAN_MOUNT } from "./_support/fault_helpers.ts";
import {
  childEnv,
  type CliResult,
  enrollAgent,
  findTool,
  MAIN,
  pemDer,
  runOnce,
  skipWithout,
  tempDir,
  withDeadline,
} from "./_support/helpers.ts";
import { sha256Hex } from "../src/sha256.ts";

const TAR = findTool("tar", "/usr/bin/tar");
const SETPRIV = findTool("setpriv", "/usr/bin/setpriv");
const UNSHARE = findTool("unshare", "/usr/bin/unshare");
const JOURNALCTL = "/usr/bin/journalctl";
const NOBODY = 65534;
const canRun = Deno.build.os === "linux" && Deno.uid() === 0 && CAN_MOUNT && TAR !== null &&
  SETPRIV !== null && UNSHARE !== null && (() => {
    try {
      return Deno.statSync(JOURNALCTL).isFile;
    } catch {
      return false;
    }
  })();

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
const b64url = (b: Uint8Array) => b64(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const canary = (what: string) => `cnry-${what}-${hex(crypto.getRandomValues(new Uint8Array(8)))}`;

/** Every form in which `secret` could leak: as is and in the usual encodings. */
function encodings(secret: string): string[] {
  const bytes = encoder.encode(secret);
  return [secret, b64(bytes), b64url(bytes), hex(bytes), encodeURIComponent(secret)];
}

/** One planted secret: a label and every string whose presence would be a leak. */
interface Canary {
  label: string;
  forms: string[];
}

/** A bundle's every file (GNU tar unpacked it), and the raw tar stream (names included). */
async function unpack(bundle: string, into: string): Promise<Map<string, string>> {
  await Deno.mkdir(into, { recursive: true });
  const out = await new Deno.Command(TAR!, { args: ["-xzf", bundle, "-C", into] }).output();
  assert.ok(out.success, decoder.decode(out.stderr));
  const stream = await new Deno.Command(TAR!, { args: ["-xzOf", bundle] }).output();
  const files = new Map<string, string>([["<tar stream>", decoder.decode(stream.stdout)]]);
  const walk = async (dir: string, prefix: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path, `${prefix}${e.name}/`);
      else files.set(`${prefix}${e.name}`, await Deno.readTextFile(path));
    }
  };
  await walk(into, "");
  return files;
}

function assertNoCanary(where: Map<string, string>, canaries: Canary[]): void {
  for (const [name, text] of where) {
    const lower = text.toLowerCase();
    for (const c of canaries) {
      for (const form of c.forms) {
        assert.ok(
          !lower.includes(form.toLowerCase()),
          `${c.label} leaked into ${name} as ${JSON.stringify(form.slice(0, 40))}`,
        );
      }
    }
  }
}

/** The entry `name` of an unpacked bundle, parsed. */
function entry(files: Map<string, string>, name: string): Record<string, unknown> {
  const key = [...files.keys()].find((k) => k.endsWith(`/${name}`));
  assert.ok(key, `no ${name} in ${[...files.keys()].join(", ")}`);
  return JSON.parse(files.get(key)!);
}

/** Names, kinds, modes, sizes and mtimes of a directory's entries: "never changes the state". */
async function snapshot(dir: string): Promise<string> {
  const rows: string[] = [];
  const info = await Deno.lstat(dir);
  rows.push(`. ${info.mode} ${info.uid} ${info.mtime?.getTime()}`);
  for await (const e of Deno.readDir(dir)) {
    const i = await Deno.lstat(join(dir, e.name));
    rows.push(`${e.name} ${i.mode} ${i.uid} ${i.size} ${i.mtime?.getTime()}`);
  }
  return rows.sort().join("\n");
}

interface Scene {
  stateDir: string;
  journalScript: string;
  deno: string;
  work: string;
  env: Record<string, string>;
}

/**
 * Runs `diagnostics` in a private mount namespace where /usr/bin/journalctl is the fake, as root
 * or (`asNobody`) as uid/gid 65534 with a DENO_DIR and a Deno binary that user can read.
 */
async function diagnostics(
  scene: Scene,
  args: string[],
  asNobody: boolean,
  output: string,
): Promise<CliResult> {
  const flags = await agentPermissionFlags();
  const agent = [
    asNobody ? scene.deno : Deno.execPath(),
    "run",
    "--quiet",
    ...flags,
    MAIN,
    "--state-dir",
    scene.stateDir,
    "diagnostics",
    "--output",
    output,
    ...args,
  ];
  const drop = asNobody
    ? [SETPRIV!, `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"]
    : [];
  const env = childEnv({
    NO_COLOR: "1",
    ...scene.env,
    ...(asNobody ? { HOME: scene.work, DENO_DIR: join(scene.work, "deno-dir") } : {}),
  });
  const child = new Deno.Command(UNSHARE!, {
    args: [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind "$0" /usr/bin/journalctl && exec "$@"',
      scene.journalScript,
      ...drop,
      ...agent,
    ],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await withDeadline(child, 90_000, `diagnostics ${args.join(" ")}`).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test({
  name: "diagnostics bundle holds none of the planted secrets, as root and as nobody",
  ignore: skipWithout(canRun),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    // World-traversable, so nobody reaches what is meant for it (temp dirs are 0700).
    await using work = await tempDir("oneconnect-diag-secrets-");
    await Deno.chmod(work.path, 0o755);
    const stateDir = join(work.path, "state");
    await Deno.mkdir(stateDir, { mode: 0o700 });
    await enrollAgent(platform, stateDir);
    const once = await runOnce(stateDir, "bearer");
    assert.equal(once.code, 0, once.stderr);

    const identity = JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
    const keyPem: string = identity.private_key;
    const keyDer = pemDer(keyPem, "PRIVATE KEY");
    const keyBody = keyPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
    const bearer: string = identity.service_account_token;
    const tokenFile = canary("token-file");
    const tokenEnv = canary("token-env");
    const proxyFile = canary("proxy-pass-file");
    const proxyEnv = canary("proxy-pass-env");
    const unknownKey = canary("unknown-key");
    const urlQuery = canary("url-query");
    const logSecrets = [
      canary("log-kv"),
      canary("log-bearer"),
      canary("log-json"),
      canary("log-url"),
    ];
    const foreign = canary("foreign-line");

    const canaries: Canary[] = [
      { label: "private key PEM", forms: [keyPem.trim(), keyBody, ...keyBody.match(/.{64}/g)!] },
      { label: "private key DER", forms: [hex(keyDer), b64(keyDer), b64url(keyDer)] },
      { label: "private key hash", forms: [await sha256Hex(keyDer)] },
      { label: "bearer", forms: [...encodings(bearer), await sha256Hex(encoder.encode(bearer))] },
      { label: "enrollment token file", forms: encodings(tokenFile) },
      { label: "enrollment token env", forms: encodings(tokenEnv) },
      { label: "proxy password in agent.json", forms: encodings(proxyFile) },
      { label: "proxy password in HTTPS_PROXY", forms: encodings(proxyEnv) },
      { label: "unknown agent.json value", forms: encodings(unknownKey) },
      { label: "platform URL query", forms: encodings(urlQuery) },
      { label: "foreign journal line", forms: encodings(foreign) },
      ...logSecrets.map((s, i) => ({ label: `log line secret ${i}`, forms: encodings(s) })),
    ];

    await Deno.writeTextFile(join(stateDir, "enrollment.token"), `${tokenFile}\n`, {
      mode: 0o600,
    });
    const validConfig = JSON.stringify({
      proxy_url: `http://proxyuser:${proxyFile}@127.0.0.1:9/`,
      log_level: "info",
    });
    await Deno.writeTextFile(join(stateDir, "agent.json"), validConfig, { mode: 0o600 });

    // The unit's journal: the agent's own lines (text and JSON) with secrets a buggy log call
    // could have let through, and lines of other programs, which must be dropped whole.
    const journal = join(work.path, "journal.txt");
    await Deno.writeTextFile(
      journal,
      [
        "2026-12-06T10:00:00.000Z INFO  Heartbeat accepted sequence=1",
        `2026-12-06T10:00:01.000Z WARN  retrying with password=${logSecrets[0]}`,
        `2026-12-06T10:00:02.000Z ERROR sent Authorization: Bearer ${logSecrets[1]}`,
        `{"ts":"2026-12-06T10:00:03.000Z","level":"warn","msg":"oops","api_key":"${
          logSecrets[2]
        }"}`,
        `2026-12-06T10:00:04.000Z INFO  via proxy http://u:${logSecrets[3]}@127.0.0.1:3128`,
        `2026-12-06T10:00:05.000Z ERROR key ${keyPem.replace(/\n/g, "\\n")}`,
        `Started oneconnect-agent.service ${foreign}`,
        `thread 'main' panicked at ${foreign} ${bearer}`,
        `{"not":"ours","secret":"${foreign}"}`,
        `error: Cannot reach the platform`,
      ].join("\n") + "\n",
      { mode: 0o644 },
    );
    const journalScript = join(work.path, "journalctl");
    await Deno.writeTextFile(journalScript, `#!/bin/sh\nexec cat ${journal}\n`, { mode: 0o755 });
    await Deno.chmod(journalScript, 0o755);
    // A Deno binary nobody can execute (ours may live under /root).
    const deno = join(work.path, "deno");
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);
    await Deno.mkdir(join(work.path, "deno-dir"));
    await Deno.chown(join(work.path, "deno-dir"), NOBODY, NOBODY);
    const out = join(work.path, "out");
    await Deno.mkdir(out, { mode: 0o777 });
    await Deno.chmod(out, 0o777);

    const scene: Scene = {
      stateDir,
      journalScript,
      deno,
      work: work.path,
      env: {
        ONECONNECT_ENROLLMENT_TOKEN: tokenEnv,
        HTTPS_PROXY: `http://envuser:${proxyEnv}@127.0.0.1:9`,
        NO_PROXY: "127.0.0.1,localhost",
      },
    };
    let n = 0;
    const build = async (args: string[], asNobody: boolean, dir = stateDir) => {
      const file = join(out, `b${++n}.tar.gz`);
      const before = await snapshot(dir);
      const result = await diagnostics({ ...scene, stateDir: dir }, args, asNobody, file);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await snapshot(dir), before, "diagnostics changed the state directory");
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
      const files = await unpack(file, join(out, `x${n}`));
      files.set("<stdout>", result.stdout);
      files.set("<stderr>", result.stderr);
      assertNoCanary(files, canaries);
      return { files, result };
    };

    // 1. Root, network on, a valid agent.json with a proxy password.
    const root = await build([], false);
    const logs = [...root.files.entries()].find(([k]) => k.endsWith("/agent_logs.txt"))![1];
    assert.equal(logs.split("\n").filter((l) => l !== "").length, 7, logs);
    assert.match(logs, /Heartbeat accepted sequence=1/);
    assert.match(logs, /\[REDACTED PRIVATE KEY\]/);
    const manifest = entry(root.files, "manifest.json");
    assert.match(JSON.stringify(manifest.entries), /3 other line\(s\) dropped/);
    const config = entry(root.files, "config.json") as {
      settings: Record<string, { value: unknown; source: string }>;
    };
    assert.deepEqual(config.settings.proxyUrl, {
      value: "http://127.0.0.1:9/",
      source: "agent.json proxy_url",
    });
    const env = entry(root.files, "environment.json") as {
      set: string[];
      proxy: Record<string, string>;
    };
    assert.ok(env.set.includes("ONECONNECT_ENROLLMENT_TOKEN"));
    assert.equal(env.proxy.HTTPS_PROXY, "http://127.0.0.1:9/");
    const preflight = entry(root.files, "preflight.json") as {
      checks: Array<{ name: string; status: string }>;
    };
    assert.ok(
      preflight.checks.some((c) => c.name === "health" && c.status === "ok"),
      JSON.stringify(preflight),
    );
    const meta = entry(root.files, "identity.json") as {
      agent_id: string;
      certificate: { sha256_fingerprint: string };
    };
    assert.equal(meta.agent_id, identity.agent_id);

    // 2. nobody, on a copy of the state it owns.
    const owned = join(work.path, "owned");
    await Deno.mkdir(owned, { mode: 0o700 });
    for await (const e of Deno.readDir(stateDir)) {
      await Deno.copyFile(join(stateDir, e.name), join(owned, e.name));
      await Deno.chown(join(owned, e.name), NOBODY, NOBODY);
    }
    await Deno.chown(owned, NOBODY, NOBODY);
    const mine = await build(["--no-network"], true, owned);
    assert.equal(
      (entry(mine.files, "identity.json") as { agent_id: string }).agent_id,
      meta.agent_id,
    );
    assert.deepEqual(entry(mine.files, "manifest.json").could_not_read, []);

    // 3. nobody, on root's 0700 state directory: says what it could not read, leaks nothing.
    const denied = await build(["--no-network"], true);
    const missing = entry(denied.files, "manifest.json").could_not_read as Array<{ what: string }>;
    assert.ok(missing.some((m) => m.what === "identity"), JSON.stringify(missing));
    const stderr = denied.result.stderr.trim().split("\n");
    assert.equal(stderr.length, 1, denied.result.stderr);
    assert.match(stderr[0]!, /WARN {2}Diagnostics bundle written without: .*identity/);

    // 4. Root again, agent.json invalid (an unknown key, a secret in the platform URL's query),
    // and the identity's platform URL carrying a query (refused, and quoted by that refusal).
    await Deno.writeTextFile(
      join(stateDir, "agent.json"),
      JSON.stringify({
        platform_url: `https://127.0.0.1:1/?sig=${urlQuery}`,
        proxy_url: `http://proxyuser:${proxyFile}@127.0.0.1:9/`,
        extra_secret: unknownKey,
      }),
      { mode: 0o600 },
    );
    const broken = await build(["--no-network"], false);
    const ignored = entry(broken.files, "config.json") as Record<string, unknown>;
    assert.match(String(ignored["agent.json_ignored"]), /unknown field "extra_secret"/);
    assert.deepEqual(
      (ignored.agent_json as { unknown_keys: string[] }).unknown_keys,
      ["extra_secret"],
    );
    await Deno.writeTextFile(
      join(stateDir, "identity.json"),
      JSON.stringify({ ...identity, platform_url: `${platform.url.href}?sig=${urlQuery}` }),
      { mode: 0o600 },
    );
    const refused = await build(["--no-network"], false);
    const notRead = entry(refused.files, "manifest.json").could_not_read as Array<
      { what: string; reason: string }
    >;
    const why = notRead.find((m) => m.what === "identity");
    assert.ok(why, JSON.stringify(notRead));
    assert.match(why.reason, /Refusing identity file/);
  },
});
