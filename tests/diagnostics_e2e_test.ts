import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { collectBundle } from "../src/diagnostics/bundle.ts";
import { entryText } from "../src/diagnostics/manifest.ts";
import { resolveConfig } from "../src/config/config.ts";
import { OPENSSL_BIN } from "./_support/openssl_pki.ts";
import { testContext } from "./_support/context_fixture.ts";
import { Harness, HAS_STRACE } from "./_support/fault_helpers.ts";
import {
  enrollAgent,
  errorLine,
  findTool,
  runAgent,
  skipWithout,
  startRun,
  tempDir,
  until,
} from "./_support/helpers.ts";

const TAR = findTool("tar", "/usr/bin/tar");
const decoder = new TextDecoder();

/** The files of a `.tar.gz`, unpacked by GNU tar, by their name inside the bundle's folder. */
async function unpack(bundle: string, into: string): Promise<Map<string, string>> {
  await Deno.mkdir(into, { recursive: true });
  const out = await new Deno.Command(TAR!, { args: ["-xzf", bundle, "-C", into] }).output();
  assert.ok(out.success, decoder.decode(out.stderr));
  const files = new Map<string, string>();
  for await (const folder of Deno.readDir(into)) {
    for await (const e of Deno.readDir(join(into, folder.name))) {
      files.set(e.name, await Deno.readTextFile(join(into, folder.name, e.name)));
    }
  }
  return files;
}

function json(files: Map<string, string>, name: string): Record<string, unknown> {
  const text = files.get(name);
  assert.ok(text !== undefined, `no ${name} in ${[...files.keys()].join(", ")}`);
  return JSON.parse(text);
}

/** A TCP listener that accepts and never answers (a platform that hangs). */
function silentListener(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch {
      // closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      for (const c of held) c.close();
      listener.close();
    },
  };
}

/** Points the identity in `stateDir` at `url` (as if the platform moved there). */
async function repointIdentity(stateDir: string, url: string): Promise<void> {
  const path = join(stateDir, "identity.json");
  const identity = JSON.parse(await Deno.readTextFile(path));
  await Deno.writeTextFile(path, JSON.stringify({ ...identity, platform_url: url }), {
    mode: 0o600,
  });
}

Deno.test({
  name:
    "diagnostics against the dev platform: default name, mode 0600, every entry, openssl's fingerprint",
  ignore: skipWithout(TAR !== null),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir("oneconnect-diag-e2e-");
    const state = join(dir.path, "state");
    await Deno.mkdir(state, { mode: 0o700 });
    const agentId = await enrollAgent(platform, state);
    const once = await runAgent(["--state-dir", state, "run", "--once"]);
    assert.equal(once.code, 0, once.stderr);
    const work = join(dir.path, "work");
    await Deno.mkdir(work);

    const result = await runAgent(["--state-dir", state, "diagnostics"], { cwd: work });
    assert.equal(result.code, 0, result.stderr);
    const name = result.stdout.trim();
    assert.match(name, new RegExp(`^oneconnect-diagnostics-${agentId}-\\d{8}T\\d{6}Z\\.tar\\.gz$`));
    const info = await Deno.stat(join(work, name));
    assert.equal(info.mode! & 0o777, 0o600);

    const files = await unpack(join(work, name), join(dir.path, "x"));
    const manifest = json(files, "manifest.json") as {
      entries: Array<{ name: string; source: string; why_no_secret: string }>;
      network_checks: boolean;
    };
    assert.equal(manifest.network_checks, true);
    assert.deepEqual(manifest.entries.map((e) => e.name).sort(), [...files.keys()].sort());
    for (const e of manifest.entries) assert.ok(e.source && e.why_no_secret, e.name);
    const preflight = json(files, "preflight.json") as {
      completed: boolean;
      checks: Array<{ name: string; status: string }>;
    };
    assert.equal(preflight.completed, true);
    assert.deepEqual(
      preflight.checks.map((c) => `${c.name}:${c.status}`),
      ["route:ok", "dns:skip", "tcp:ok", "tls:ok", "health:ok", "clock:ok"],
    );
    const status = json(files, "status.json") as { agent_id: string; sequence: number };
    assert.equal(status.agent_id, agentId);
    assert.match(files.get("metrics.prom")!, /^oneconnect_agent_heartbeats_sent_total\S* 1$/m);
    const telemetry = json(files, "telemetry.json") as { host: { hostname: string } };
    assert.equal(telemetry.host.hostname, Deno.hostname());
    const audit = json(files, "permissions.json") as {
      directory: { mode: string };
      entries: Array<{ name: string; mode: string }>;
    };
    assert.equal(audit.directory.mode, "0700");
    assert.ok(audit.entries.some((e) => e.name === "identity.json" && e.mode === "0600"));

    // The certificate facts, judged by openssl.
    const identity = JSON.parse(await Deno.readTextFile(join(state, "identity.json")));
    const certFile = join(dir.path, "cert.pem");
    await Deno.writeTextFile(certFile, identity.certificate);
    const ossl = await new Deno.Command(OPENSSL_BIN, {
      args: ["x509", "-in", certFile, "-noout", "-fingerprint", "-sha256", "-serial"],
    }).output();
    assert.ok(ossl.success, decoder.decode(ossl.stderr));
    const text = decoder.decode(ossl.stdout);
    const meta = json(files, "identity.json") as {
      certificate: { sha256_fingerprint: string; serial: string };
      ca_certificates: Array<{ sha256_fingerprint: string }>;
    };
    assert.equal(
      meta.certificate.sha256_fingerprint,
      /Fingerprint=([0-9A-F:]+)/.exec(text)![1]!.replace(/:/g, "").toLowerCase(),
    );
    assert.equal(
      meta.certificate.serial.toLowerCase().replace(/^0+/, ""),
      /serial=([0-9A-F]+)/.exec(text)![1]!.toLowerCase().replace(/^0+/, ""),
    );

    // Created exclusively: a second run to the same name is refused, the first file kept.
    const again = await runAgent(["--state-dir", state, "diagnostics", "--output", name], {
      cwd: work,
    });
    assert.equal(again.code, 2);
    assert.match(errorLine(again), /already exists; remove it or choose another --output/);
    assert.equal((await Deno.stat(join(work, name))).size, info.size);
  },
});

Deno.test({
  name: "diagnostics --no-network: ready in under 2 s, and --output - streams the archive",
  ignore: skipWithout(TAR !== null),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir("oneconnect-diag-fast-");
    await enrollAgent(platform, dir.path);
    const started = performance.now();
    const result = await runAgent(["--state-dir", dir.path, "diagnostics", "--no-network"], {
      cwd: dir.path,
    });
    const wallMs = performance.now() - started;
    assert.equal(result.code, 0, result.stderr);
    const files = await unpack(join(dir.path, result.stdout.trim()), join(dir.path, "x"));
    const manifest = json(files, "manifest.json") as { collected_in_ms: number };
    console.log(
      `diagnostics --no-network: collected in ${manifest.collected_in_ms} ms, ${
        Math.round(wallMs)
      } ms for the whole process`,
    );
    assert.ok(manifest.collected_in_ms < 2000, `${manifest.collected_in_ms} ms`);
    assert.equal(
      (json(files, "preflight.json") as { skipped: string }).skipped,
      "--no-network",
    );

    const streamed = await runAgent(
      ["--state-dir", dir.path, "diagnostics", "--no-network", "--output", "-"],
    );
    assert.equal(streamed.code, 0, streamed.stderr);
    assert.equal(streamed.stdout.charCodeAt(0), 0x1f, "not gzip on stdout");
  },
});

Deno.test({
  name:
    "diagnostics against a platform that never answers: the preflight ends by its 15 s deadline",
  ignore: skipWithout(TAR !== null),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir("oneconnect-diag-silent-");
    await enrollAgent(platform, dir.path);
    const silent = silentListener();
    try {
      await repointIdentity(dir.path, `https://127.0.0.1:${silent.port}/`);
      const started = performance.now();
      const result = await runAgent(["--state-dir", dir.path, "diagnostics"], { cwd: dir.path });
      const seconds = (performance.now() - started) / 1000;
      assert.equal(result.code, 0, result.stderr);
      // The process also starts up and samples telemetry: only the preflight is held to 15 s.
      assert.ok(seconds < 60, `took ${seconds} s`);
      const files = await unpack(join(dir.path, result.stdout.trim()), join(dir.path, "x"));
      const preflight = json(files, "preflight.json") as {
        deadline_seconds: number;
        elapsed_ms: number;
        checks: Array<{ name: string; status: string; detail: string }>;
      };
      assert.equal(preflight.deadline_seconds, 15);
      assert.ok(preflight.elapsed_ms <= 16_000, `preflight took ${preflight.elapsed_ms} ms`);
      const tls = preflight.checks.find((c) => c.name === "tls");
      assert.equal(tls?.status, "fail", JSON.stringify(preflight));
      assert.match(tls.detail, /timed out/);
      assert.equal(preflight.checks.find((c) => c.name === "health")?.status, "skip");
    } finally {
      silent.close();
    }
  },
});

Deno.test("diagnostics preflight: the overall deadline ends checks whose own timeout is longer", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir("oneconnect-diag-deadline-");
  await enrollAgent(platform, dir.path);
  const silent = silentListener();
  try {
    await repointIdentity(dir.path, `https://127.0.0.1:${silent.port}/`);
    // Each check may take 600 s (timeout_seconds); the bundle's deadline (a seam here) is 1 s.
    await Deno.writeTextFile(join(dir.path, "agent.json"), '{"timeout_seconds": 600}', {
      mode: 0o600,
    });
    const config = await resolveConfig({ stateDir: dir.path });
    const started = performance.now();
    const bundle = await collectBundle({
      ctx: testContext(dir.path, { config }).ctx,
      network: true,
      preflight: { deadlineMs: 1000 },
      logs: { journalctlPaths: ["/nonexistent/journalctl"] },
    });
    const ms = performance.now() - started;
    assert.ok(ms < 5000, `took ${ms} ms`);
    const preflight = JSON.parse(
      entryText(bundle.entries.find((e) => e.name === "preflight.json")!),
    );
    assert.equal(preflight.deadline_reached, true, JSON.stringify(preflight));
    assert.equal(preflight.checks.find((c: { name: string }) => c.name === "tls").status, "fail");
    assert.ok(bundle.unreadable.some((u) => u.what === "agent logs"));
  } finally {
    silent.close();
  }
});

Deno.test("diagnostics runs next to a running agent and leaves it running", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir("oneconnect-diag-running-");
  const agentId = await enrollAgent(platform, dir.path);
  await using run = startRun(dir.path, ["--interval", "1"]);
  await until(() => platform.heartbeats(agentId).length >= 1, "a first heartbeat");
  const result = await runAgent(["--state-dir", dir.path, "diagnostics", "--no-network"], {
    cwd: dir.path,
  });
  assert.equal(result.code, 0, result.stderr);
  const before = platform.heartbeats(agentId).length;
  await until(() => platform.heartbeats(agentId).length > before, "a heartbeat after diagnostics");
  const stopped = await run.terminate();
  assert.equal(stopped.code, 0, stopped.stderr);
});

Deno.test({
  name:
    "diagnostics before enrollment: the preflight checks the configured platform like enroll --check",
  ignore: skipWithout(TAR !== null),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir("oneconnect-diag-unenrolled-");
    const state = join(dir.path, "state");
    const result = await runAgent(["--state-dir", state, "diagnostics"], {
      cwd: dir.path,
      env: { ONECONNECT_PLATFORM_URL: platform.url.href, ONECONNECT_CA_FILE: platform.caFile },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^oneconnect-diagnostics-not-enrolled-/);
    const files = await unpack(join(dir.path, result.stdout.trim()), join(dir.path, "x"));
    const preflight = json(files, "preflight.json") as {
      target: string;
      checks: Array<{ name: string; status: string; detail: string }>;
    };
    assert.match(preflight.target, /not enrolled/);
    assert.equal(preflight.checks.find((c) => c.name === "health")?.status, "ok");
    assert.match(preflight.checks.find((c) => c.name === "tls")!.detail, /the CA file/);
    assert.deepEqual(json(files, "identity.json"), { enrolled: false });
    assert.equal(await Deno.lstat(state).then(() => true, () => false), false, "state created");
  },
});

Deno.test({
  name:
    "diagnostics --output creates the bundle exclusively and sets 0600 on its handle, never chmod by name",
  ignore: skipWithout(HAS_STRACE),
  async fn() {
    await using h = await Harness.open();
    const output = join(h.root, "bundle.tar.gz");
    const traceFile = join(h.root, "diagnostics.strace");
    await using run = h.spawnTraced(["diagnostics", "--no-network", "--output", output], {
      strace: ["-e", "trace=openat,chmod,fchmod,fchmodat"],
      traceFile,
    });
    const end = await run.exited();
    assert.equal(end.code, 0, end.stderr);
    assert.equal((await Deno.stat(output)).mode! & 0o777, 0o600);
    const trace = (await Deno.readTextFile(traceFile)).split("\n");
    const quoted = JSON.stringify(output);
    // A swap of the name for a symbolic link between two calls would redirect a chmod by name.
    assert.deepEqual(
      trace.filter((l) => /\b(chmod|fchmodat2?)\(/.test(l) && l.includes(output)),
      [],
    );
    assert.ok(
      trace.some((l) =>
        l.includes("openat(") && l.includes(`, ${quoted}, `) && l.includes("O_EXCL")
      ),
      "the bundle is opened with O_CREAT|O_EXCL",
    );
    assert.ok(
      trace.some((l) => /\bfchmod\(\d+</.test(l) && l.includes(`${output}>, 0600)`)),
      "its mode is set through the open handle",
    );
  },
});
