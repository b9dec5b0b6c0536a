import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";
import {
  enrollAgent,
  freePort,
  promSample as sample,
  runAgent,
  skipWithout,
  spawnAgent,
  tempDir,
} from "./_support/helpers.ts";

const NODE_EXPORTER = "/usr/bin/prometheus-node-exporter";
const nodeExporterMissing = (() => {
  try {
    return !Deno.statSync(NODE_EXPORTER).isFile;
  } catch {
    return true;
  }
})();

Deno.test({
  name: "node_exporter's textfile collector serves the metrics file that run keeps current",
  ignore: skipWithout(!nodeExporterMissing),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir();
    await using textfiles = await tempDir("oneconnect-textfile-");
    const agentId = await enrollAgent(platform, dir.path);
    platform.injectFault({ route: "heartbeat", status: 503, times: 2 });

    const port = freePort();
    const exporter = new Deno.Command(NODE_EXPORTER, {
      args: [
        "--collector.disable-defaults",
        "--collector.textfile",
        `--collector.textfile.directory=${textfiles.path}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      stdout: "null",
      stderr: "piped",
      clearEnv: true,
      env: { PATH: "/usr/bin:/bin" },
    }).spawn();
    const exporterOut = exporter.output();
    const agent = spawnAgent([
      "--state-dir",
      dir.path,
      "run",
      "--interval",
      "1",
      "--metrics-file",
      join(textfiles.path, "oneconnect_agent.prom"),
    ]);
    const agentOut = agent.output();
    try {
      let scraped = "";
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/metrics`);
          scraped = await res.text();
        } catch {
          scraped = "";
        }
        // Written at once when the state changes (failing -> accepted), else every 15 s.
        if ((sample(scraped, "oneconnect_agent_heartbeats_sent_total") ?? 0) >= 1) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(
        (sample(scraped, "oneconnect_agent_heartbeats_sent_total") ?? 0) >= 1,
        `no metrics scraped in time:\n${scraped.slice(-2000)}`,
      );
      // The collector parsed the file (a malformed one sets the scrape error to 1).
      assert.equal(sample(scraped, "node_textfile_scrape_error"), 0);
      assert.equal(sample(scraped, "oneconnect_agent_heartbeats_failed_total"), 2);
      assert.equal(sample(scraped, "oneconnect_agent_consecutive_failures"), 0);
      assert.ok(
        scraped.includes(`oneconnect_agent_info{agent_id="${agentId}",version="`),
        scraped,
      );
      const lastSuccess = sample(scraped, "oneconnect_agent_last_success_timestamp_seconds") ?? 0;
      assert.ok(Math.abs(lastSuccess - Date.now() / 1000) < 30, String(lastSuccess));
      assert.equal(sample(scraped, "oneconnect_agent_heartbeat_interval_seconds"), 1);
    } finally {
      agent.kill("SIGTERM");
      exporter.kill("SIGTERM");
    }
    const end = await agentOut;
    assert.equal(end.code, 0, new TextDecoder().decode(end.stderr));
    await exporterOut;

    // `status --format prometheus` prints the same state from status.json, now stopped.
    const status = await runAgent(["--state-dir", dir.path, "status", "--format", "prometheus"]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(sample(status.stdout, "oneconnect_agent_stopped"), 1);
    assert.equal(sample(status.stdout, "oneconnect_agent_heartbeats_failed_total"), 2);
    const file = await Deno.readTextFile(join(textfiles.path, "oneconnect_agent.prom"));
    assert.equal(sample(file, "oneconnect_agent_stopped"), 1);
    assert.equal(
      sample(file, "oneconnect_agent_heartbeats_sent_total"),
      sample(status.stdout, "oneconnect_agent_heartbeats_sent_total"),
    );
  },
});

Deno.test("status --format refuses an unknown format and a conflicting --json (exit 2)", async () => {
  await using dir = await tempDir();
  const bad = await runAgent(["--state-dir", dir.path, "status", "--format", "xml"]);
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /^error: Invalid status format "xml" \(--format\): expected one of text, json, prometheus\n$/,
  );
  const both = await runAgent([
    "--state-dir",
    dir.path,
    "status",
    "--json",
    "--format",
    "prometheus",
  ]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /Conflicting --json and --format prometheus/);
});

Deno.test({
  name: "run refuses a metrics directory others can write (not sticky): exit 2, one line, no file",
  ignore: Deno.build.os === "windows",
  async fn() {
    // Fails on 32b58ff: run wrote there as root, where another user can swap names under it.
    await using dir = await tempDir();
    const stateDir = join(dir.path, "state");
    // An unreachable platform: run --once would fail with exit 4 if it got that far.
    await new IdentityStore(stateDir).save(
      await makeIdentity(await createDevCa(), { platformUrl: "https://127.0.0.1:1/" }),
    );
    const shared = join(dir.path, "textfile");
    await Deno.mkdir(shared);
    await Deno.chmod(shared, 0o777);
    const metricsFile = join(shared, "oneconnect_agent.prom");
    const runOnce = () =>
      runAgent(["--state-dir", stateDir, "run", "--once", "--metrics-file", metricsFile]);
    const r = await runOnce();
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.equal(
      r.stderr.trim(),
      `error: Refusing metrics file ${JSON.stringify(metricsFile)}: the directory ${
        JSON.stringify(shared)
      } above it is writable by group or others (mode 0777), who could replace it; as its owner or root run: chmod go-w ${shared}`,
    );
    assert.deepEqual([...Deno.readDirSync(shared)], []);
    // Sticky (like /tmp): others cannot rename or remove the agent's files there.
    await Deno.chmod(shared, 0o1777);
    const sticky = await runOnce();
    assert.equal(sticky.code, 4, sticky.stderr);
    assert.equal(
      sample(await Deno.readTextFile(metricsFile), "oneconnect_agent_heartbeats_failed_total"),
      1,
    );
    assert.equal((await Deno.stat(metricsFile)).mode! & 0o777, 0o644);
  },
});
