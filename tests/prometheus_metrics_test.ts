import assert from "node:assert/strict";
import { join } from "node:path";
import { withMetricsFile } from "../src/state/metrics_file.ts";
import { renderPrometheusMetrics } from "../src/state/prometheus_metrics.ts";
import { type AgentStatus, emptyStatus } from "../src/state/status_store.ts";
import { promSample as sample, skipWithout, tempDir } from "./_support/helpers.ts";
import { type Logger, silentLogger } from "../src/log.ts";

const PROMTOOL = "/usr/bin/promtool";
const promtoolMissing = (() => {
  try {
    return !Deno.statSync(PROMTOOL).isFile;
  } catch {
    return true;
  }
})();

const identity = {
  agent_id: "agt_0123",
  platform_url: "https://platform.example.com/",
  enrolled_at: "2026-11-01T00:00:00.000Z",
  certificate_not_after: "2026-12-31T00:00:00.000Z",
  version: "1.2.3",
};
const NOW = Date.parse("2026-12-01T12:00:00.000Z");

function busyStatus(): AgentStatus {
  return {
    ...emptyStatus("agt_0123"),
    last_attempt_at: "2026-12-01T11:59:50.000Z",
    last_success_at: "2026-12-01T11:58:50.000Z",
    consecutive_failures: 1,
    failing_since: "2026-12-01T11:59:50.000Z",
    next_attempt_at: "2026-12-01T12:00:30.000Z",
    certificate_expires_at: "2027-01-15T00:00:00.000Z",
    permission_repairs: [{ path: "/s/identity.json", old_mode: "0644", new_mode: "0600" }],
    renewal: {
      next_at: "2026-12-20T00:00:00.000Z",
      last_error: null,
      last_renewed_at: "2026-11-20T00:00:00.000Z",
    },
    heartbeats_sent_total: 41,
    heartbeats_failed_total: 3,
    interval_seconds: 60,
  };
}

Deno.test("prometheus metrics carry every agent fact in seconds and counters", () => {
  const text = renderPrometheusMetrics(identity, busyStatus(), NOW);
  assert.match(text, /^oneconnect_agent_info\{version="1\.2\.3",agent_id="agt_0123"\} 1$/m);
  assert.equal(
    sample(text, "oneconnect_agent_last_success_timestamp_seconds"),
    Date.parse("2026-12-01T11:58:50Z") / 1000,
  );
  assert.equal(sample(text, "oneconnect_agent_consecutive_failures"), 1);
  assert.equal(sample(text, "oneconnect_agent_heartbeats_sent_total"), 41);
  assert.equal(sample(text, "oneconnect_agent_heartbeats_failed_total"), 3);
  assert.equal(sample(text, "oneconnect_agent_heartbeat_interval_seconds"), 60);
  // The renewed certificate in status.json wins over the identity loaded at start.
  assert.equal(
    sample(text, "oneconnect_agent_certificate_expiry_timestamp_seconds"),
    Date.parse("2027-01-15T00:00:00Z") / 1000,
  );
  assert.equal(
    sample(text, "oneconnect_agent_next_renewal_timestamp_seconds"),
    Date.parse("2026-12-20T00:00:00Z") / 1000,
  );
  assert.equal(
    sample(text, "oneconnect_agent_last_renewal_success_timestamp_seconds"),
    Date.parse("2026-11-20T00:00:00Z") / 1000,
  );
  assert.equal(sample(text, "oneconnect_agent_permission_repairs"), 1);
  assert.equal(sample(text, "oneconnect_agent_wait_seconds"), 30);
  assert.equal(sample(text, "oneconnect_agent_stopped"), 0);
  assert.match(text, /^# TYPE oneconnect_agent_heartbeats_sent_total counter$/m);
  assert.match(text, /^# TYPE oneconnect_agent_consecutive_failures gauge$/m);
});

Deno.test("prometheus metrics of an agent that never sent: success 0, no wait, no renewal", () => {
  const text = renderPrometheusMetrics(identity, null, NOW);
  assert.equal(sample(text, "oneconnect_agent_last_success_timestamp_seconds"), 0);
  assert.equal(sample(text, "oneconnect_agent_heartbeats_sent_total"), 0);
  assert.equal(sample(text, "oneconnect_agent_wait_seconds"), undefined);
  assert.equal(sample(text, "oneconnect_agent_next_renewal_timestamp_seconds"), undefined);
  assert.doesNotMatch(text, /oneconnect_agent_next_renewal_timestamp_seconds/);
  assert.equal(
    sample(text, "oneconnect_agent_certificate_expiry_timestamp_seconds"),
    Date.parse(identity.certificate_not_after) / 1000,
  );
  const stopped = renderPrometheusMetrics(identity, {
    ...busyStatus(),
    stopped: { at: "2026-12-01T12:00:00.000Z", reason: "shutdown", message: "stopped" },
  }, NOW);
  assert.equal(sample(stopped, "oneconnect_agent_stopped"), 1);
  assert.equal(sample(stopped, "oneconnect_agent_wait_seconds"), undefined);
});

Deno.test("prometheus label values are escaped", () => {
  const text = renderPrometheusMetrics({ ...identity, version: 'a"b\\c\nd' }, null, NOW);
  assert.ok(text.includes('version="a\\"b\\\\c\\nd"'), text);
});

Deno.test({
  name: "promtool accepts the metrics and the alert rules of docs/operations.md",
  ignore: skipWithout(!promtoolMissing),
  async fn() {
    for (const status of [busyStatus(), null]) {
      const text = renderPrometheusMetrics(identity, status, NOW);
      const child = new Deno.Command(PROMTOOL, {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(text));
      await writer.close();
      const out = await child.output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      // promtool prints lint findings (naming, units) and exits non-zero on any of them.
      assert.equal(out.code, 0, said);
      assert.equal(said.trim(), "");
    }
    const operations = await Deno.readTextFile(new URL("../docs/operations.md", import.meta.url));
    const rules = operations.match(/```yaml\n(groups:\n[\s\S]*?oneconnect_agent[\s\S]*?)```/)?.[1];
    assert.ok(rules, "docs/operations.md has a yaml alert-rules block");
    await using dir = await tempDir();
    const file = join(dir.path, "rules.yml");
    await Deno.writeTextFile(file, rules);
    const out = await new Deno.Command(PROMTOOL, { args: ["check", "rules", file] }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, said);
    assert.match(said, /SUCCESS: 2 rules found/);
  },
});

function recordingLogger(lines: string[]): Logger {
  return {
    ...silentLogger,
    warn: (msg: string) => void lines.push(`warn ${msg}`),
    info: (msg: string) => void lines.push(`info ${msg}`),
  } as Logger;
}

Deno.test("metrics file is rewritten once per attempt, not on other status saves", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "agent.prom");
  const current = emptyStatus("agt_0123");
  let saves = 0;
  const sink = withMetricsFile({ current, save: () => Promise.resolve(void saves++) }, {
    path,
    identity,
    logger: silentLogger,
    now: () => NOW,
  });
  await sink.save(); // a sequence reservation: nothing attempted yet
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  current.last_attempt_at = "2026-12-01T11:59:00.000Z";
  current.heartbeats_sent_total = 1;
  await sink.save();
  assert.equal(sample(await Deno.readTextFile(path), "oneconnect_agent_heartbeats_sent_total"), 1);
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o644);
  const first = (await Deno.stat(path)).mtime;
  current.renewal = { next_at: null, last_error: "x", last_renewed_at: null };
  await sink.save(); // a renewal's save, same attempt
  assert.deepEqual((await Deno.stat(path)).mtime, first);
  current.stopped = { at: "2026-12-01T12:00:00.000Z", reason: "shutdown", message: "stopped" };
  await sink.save();
  assert.equal(sample(await Deno.readTextFile(path), "oneconnect_agent_stopped"), 1);
  assert.equal(saves, 4);
  // No temp file is left beside it: the collector would read a half-written one.
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["agent.prom"]);
});

Deno.test("an unwritable metrics file is logged once and never stops the status save", async () => {
  const lines: string[] = [];
  const current = emptyStatus("agt_0123");
  let saves = 0;
  let nowMs = NOW;
  const sink = withMetricsFile({ current, save: () => Promise.resolve(void saves++) }, {
    path: "/nonexistent-dir/agent.prom",
    identity,
    logger: recordingLogger(lines),
    now: () => nowMs,
  });
  for (let i = 0; i < 3; i++) {
    nowMs += 20_000; // past the spacing: each attempt tries to write
    current.last_attempt_at = new Date(nowMs).toISOString();
    await sink.save();
  }
  assert.equal(saves, 3);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0]!, /^warn Cannot write metrics file "\/nonexistent-dir\/agent\.prom": /);
});

Deno.test("metrics file: same-kind attempts at most every 15 s, a change of state at once", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "agent.prom");
  const current = emptyStatus("agt_0123");
  let nowMs = NOW;
  const sink = withMetricsFile({ current, save: () => Promise.resolve() }, {
    path,
    identity,
    logger: silentLogger,
    now: () => nowMs,
  });
  const attempt = async (ok: boolean, afterMs: number) => {
    nowMs += afterMs;
    current.last_attempt_at = new Date(nowMs).toISOString();
    if (ok) {
      current.heartbeats_sent_total = (current.heartbeats_sent_total ?? 0) + 1;
      current.consecutive_failures = 0;
    } else {
      current.heartbeats_failed_total = (current.heartbeats_failed_total ?? 0) + 1;
      current.consecutive_failures++;
    }
    await sink.save();
    const text = await Deno.readTextFile(path);
    return [
      sample(text, "oneconnect_agent_heartbeats_sent_total"),
      sample(text, "oneconnect_agent_heartbeats_failed_total"),
    ];
  };
  assert.deepEqual(await attempt(true, 0), [1, 0]); // the first attempt is written
  assert.deepEqual(await attempt(true, 1000), [1, 0]); // 1 s later, same state: not rewritten
  assert.deepEqual(await attempt(false, 1000), [2, 1]); // success -> failure: at once
  assert.deepEqual(await attempt(false, 1000), [2, 1]);
  assert.deepEqual(await attempt(false, 14_000), [2, 3]); // 15 s after the last write: rewritten
  assert.deepEqual(await attempt(true, 1000), [3, 3]); // failure -> success: at once
});
