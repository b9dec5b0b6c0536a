/**
 * Issue 31 §3: `--log-format json` makes every stderr line one JSON object, the final error
 * included, with the failure's facts as fields; a stderr that is journald's (`JOURNAL_STREAM`
 * names its device:inode) gets sd-daemon priority prefixes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runAgent, tempDir } from "./_support/helpers.ts";

/** A loopback platform whose enroll answers 503 problem+json with a Retry-After of an hour. */
function maintenancePlatform() {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
    new Response(
      JSON.stringify({ type: "about:blank", title: "Down", status: 503, code: "maintenance" }),
      {
        status: 503,
        headers: { "content-type": "application/problem+json", "retry-after": "3600" },
      },
    ));
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("--log-format json: every stderr line is JSON, the fatal error with kind, status, code and retry delay", async () => {
  await using platform = maintenancePlatform();
  await using dir = await tempDir();
  const r = await runAgent(
    ["--log-format", "json", "--state-dir", join(dir.path, "s"), "enroll", "--url", platform.url],
    { env: { ONECONNECT_ENROLLMENT_TOKEN: "tok-123456789" } },
  );
  assert.equal(r.code, 4, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  const last = records.at(-1)!;
  assert.equal(last.level, "error");
  assert.match(String(last.msg), /^Cannot enroll: platform asked to retry after 3600 s/);
  assert.deepEqual(
    [last.exit_code, last.kind, last.http_status, last.code, last.retry_after_seconds],
    [4, "http", 503, "maintenance", 3600],
  );
  assert.ok(!r.stderr.includes("tok-123456789"));
});

Deno.test("--log-format json: a usage error before the command runs is a JSON line too", async () => {
  for (const args of [["--log-format", "json", "run", "--bogus"], ["--log-format=json", "enrol"]]) {
    const r = await runAgent(args);
    assert.equal(r.code, 2);
    const record = JSON.parse(r.stderr.trimEnd());
    assert.equal(record.level, "error");
    assert.equal(record.exit_code, 2);
  }
});

Deno.test("with JOURNAL_STREAM (systemd's journal) lines get <3>/<4>/<6> priority prefixes; without, none", async () => {
  await using platform = maintenancePlatform();
  await using dir = await tempDir();
  const args = ["--state-dir", join(dir.path, "s"), "enroll", "--url", platform.url];
  const env = { ONECONNECT_ENROLLMENT_TOKEN: "tok-123456789" };
  const r = await runAgent(args, { env: { ...env, JOURNAL_STREAM: "8:123456" } });
  assert.equal(r.code, 4, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.ok(lines.every((l) => /^<[3467]>/.test(l)), r.stderr);
  assert.match(lines.find((l) => l.includes("Generating key"))!, /^<6>\S+ INFO /);
  assert.match(lines.at(-1)!, /^<3>error: Cannot enroll: platform asked to retry after 3600 s/);
  const json = await runAgent(["--log-format", "json", ...args], {
    env: { ...env, JOURNAL_STREAM: "8:123456" },
  });
  const last = json.stderr.trimEnd().split("\n").at(-1)!;
  assert.match(last, /^<3>\{/);
  assert.equal(JSON.parse(last.slice(3)).level, "error");
  const plain = await runAgent(args, { env });
  assert.ok(plain.stderr.split("\n").every((l) => !/^<\d>/.test(l)), plain.stderr);
});
