/**
 * Our own help text must reach the operator as written: the redactor scrubs secret-shaped values
 * (URL credentials, `token: x`), and a hint that looks like one was rewritten (issue 31:
 * `expected http://[REDACTED]@]host:port`). Every hint, and every message built around one, is
 * checked against `redact` here.
 */
import assert from "node:assert/strict";
import { parseArgv, TOKEN_FLAG_HINT } from "../src/cli.ts";
import { requestWithRetries, TOKEN_SPENT_HINT } from "../src/enrollment/enroll_request.ts";
import { EXIT_CODE_MEANINGS, PlatformError, UsageError } from "../src/errors.ts";
import { fileErrorReason } from "../src/file_system.ts";
import { redact } from "../src/log.ts";
import { CLOCK_SKEW_HINT } from "../src/wire/clock_offset.ts";
import { parseProxyUrl } from "../src/proxy/proxy_hop.ts";
import { rootIdentityHint } from "../src/state/root_identity.ts";
import type { EnrollRequest } from "../src/wire/contract.ts";
import { testContext } from "./_support/context_fixture.ts";

function survives(text: string, what: string): void {
  assert.equal(redact(text), text, `${what} is rewritten by the redactor`);
}

Deno.test("every hint text survives the redactor unchanged", () => {
  const hints: Record<string, string> = {
    TOKEN_FLAG_HINT,
    TOKEN_SPENT_HINT,
    CLOCK_SKEW_HINT,
  };
  for (const [name, text] of Object.entries(hints)) survives(text, name);
  for (const [code, meaning] of EXIT_CODE_MEANINGS) survives(meaning, `exit code ${code}`);
  // The hint the issue found rewritten fails this check: the test can fail.
  assert.notEqual(
    redact("expected http://[user:pass@]host:port"),
    "expected http://[user:pass@]host:port",
  );
});

Deno.test("messages built around hints survive the redactor unchanged", async () => {
  const usage = (argv: string[]) => {
    try {
      parseArgv(argv);
    } catch (e) {
      assert.ok(e instanceof UsageError);
      return e.message;
    }
    assert.fail(`${argv.join(" ")} parsed`);
  };
  survives(usage(["enroll", "--token", "value"]), "--token");
  survives(usage(["enroll", "--token=value"]), "--token=");
  survives(usage(["enrol"]), "a command typo");
  survives(
    fileErrorReason(new Deno.errors.PermissionDenied("x"), "/var/lib/x/agent.json", true),
    "EACCES",
  );
  assert.throws(() => parseProxyUrl("ftp://proxy:21", "HTTPS_PROXY"), (e: Error) => {
    survives(e.message, "the proxy URL error");
    return true;
  });
  const { ctx } = testContext("/nonexistent", { shutdown: AbortSignal.abort() });
  const lost = { enroll: () => Promise.reject(new PlatformError("lost", { kind: "network" })) };
  const body = { enrollment_token: "t" } as unknown as EnrollRequest;
  await assert.rejects(
    requestWithRetries(ctx, { client: { ...lost, close: () => {} }, body, timeoutSeconds: 60 }, {
      sleep: () => Promise.resolve(),
      random: () => 0.5,
      now: () => 0,
    }),
    (e: Error) => {
      assert.match(e.message, /^Cannot enroll: interrupted; /);
      survives(e.message, "the interrupted enrollment");
      return true;
    },
  );
  for (const present of [true, false]) {
    const hint = await rootIdentityHint("/home/u/.local/state/oneconnect-agent", "status", {
      env: (name) =>
        name === "ONECONNECT_SYSTEM_STATE_DIR" ? "/var/lib/oneconnect-agent" : undefined,
      os: "linux",
      uid: () => 1000,
      lstat: () =>
        present
          ? Promise.resolve({} as Deno.FileInfo)
          : Promise.reject(new Deno.errors.PermissionDenied("denied")),
    });
    assert.ok(hint !== null);
    survives(hint, `the forgot-sudo hint (identity ${present ? "seen" : "unreadable"})`);
  }
});
