/**
 * Issue 31 §3 under a real journald: the agent runs as a transient unit (`systemd-run`) under
 * systemd as PID 1 in a container, and `journalctl -p warning` shows its warnings and its final
 * error but not its info lines (the `<N>` priority prefixes reached journald and were parsed).
 */
import assert from "node:assert/strict";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { skipWithout } from "./_support/helpers.ts";
import { payloadContainer, TEST_DIR } from "./_support/package_fixture.ts";
import { systemdContainerUnavailable } from "./_support/systemd_container.ts";

const UNAVAILABLE = systemdContainerUnavailable();

Deno.test({
  name: "under systemd, journalctl -p warning shows the agent's warnings and error, not its info",
  ignore: skipWithout(UNAVAILABLE === null),
  sanitizeResources: false,
  async fn() {
    // The container shares the host's network: this loopback platform is reachable inside.
    await using server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () =>
        new Response(JSON.stringify({ status: 503, code: "maintenance" }), {
          status: 503,
          headers: { "content-type": "application/problem+json", "retry-after": "1" },
        }),
    );
    await using box = await payloadContainer("");
    const unit = "oc-journal-probe";
    for (const format of ["text", "json"]) {
      const run = await box.exec([
        "systemd-run",
        "--wait",
        "--quiet",
        "--unit",
        `${unit}-${format}`,
        "-p",
        "Environment=HOME=/root DENO_DIR=/var/tmp/deno ONECONNECT_ENROLLMENT_TOKEN=tok-123456789",
        `${TEST_DIR}/deno`,
        "run",
        "--quiet",
        ...await agentPermissionFlags(),
        `${TEST_DIR}/bundle/main.js`,
        "--log-format",
        format,
        "--state-dir",
        `/var/lib/oc-probe-${format}`,
        "enroll",
        "--url",
        `http://127.0.0.1:${server.addr.port}/`,
        "--timeout",
        "4",
      ]);
      // systemd-run --wait exits with the unit's status: enroll gave up (exit 4).
      assert.equal(run.code, 4, `${run.stdout}${run.stderr}`);
      const journal = (priority: string) =>
        box.sh(
          `journalctl --sync; journalctl -q -o cat -p ${priority} -u ${unit}-${format}.service`,
        );
      const warnings = (await journal("warning")).trimEnd().split("\n");
      const all = await journal("debug");
      assert.ok(all.includes("Generating key"), all);
      assert.ok(!warnings.some((l) => l.includes("Generating key")), warnings.join("\n"));
      assert.ok(warnings.some((l) => l.includes("Enrollment attempt failed; retrying")), all);
      assert.ok(!/^<\d>/m.test(all), `a priority prefix reached the journal text:\n${all}`);
      const errors = (await journal("err")).trimEnd().split("\n");
      const last = errors.at(-1)!;
      if (format === "json") {
        const record = JSON.parse(last);
        assert.equal(record.level, "error");
        assert.equal(record.http_status, 503);
        assert.equal(record.code, "maintenance");
      } else {
        assert.match(last, /^error: Cannot enroll: .*platform answered 503 maintenance/);
      }
      assert.ok(errors.every((l) => !l.includes("WARN")), errors.join("\n"));
    }
  },
});
