/**
 * The agent through Debian's squid, a forward proxy this project did not write: CONNECT with Basic
 * credentials from HTTPS_PROXY (checked by squid's basic_ncsa_auth), and a clear error when they
 * are wrong or missing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollArgs, hostPort, runAgent, skipWithout, tempDir, until } from "./_support/helpers.ts";
import { type Squid, squidAvailable, startSquid } from "./_support/squid.ts";

/** squid's access-log lines for CONNECTs to `target`. */
function connects(log: string, target: string): string[] {
  return log.split("\n").filter((l) => l.includes(" CONNECT ") && l.includes(target));
}

/**
 * Waits until squid has logged more than `after` CONNECTs to `target` (it logs a tunnel when it
 * closes, a moment after the agent exits) and returns them all; fails after 20 s.
 */
async function loggedConnects(squid: Squid, target: string, after = 0): Promise<string[]> {
  let lines: string[] = [];
  await until(async () => {
    lines = connects(await squid.accessLog(), target);
    return lines.length > after;
  }, `squid to log more than ${after} CONNECTs to ${target}`);
  return lines;
}

Deno.test({
  name: "enroll and run tunnel through squid with Basic credentials from HTTPS_PROXY",
  ignore: skipWithout(squidAvailable()),
}, async () => {
  await using squid = await startSquid();
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const { username, password } = squid.credentials;
  const proxy = `http://${username}:${encodeURIComponent(password)}@${hostPort(squid.authUrl)}`;
  const env = { HTTPS_PROXY: proxy };
  const target = hostPort(platform.url);

  const enroll = await runAgent([
    "--state-dir",
    dir.path,
    "--log-level",
    "debug",
    ...enrollArgs(platform, "--token-file", "-"),
  ], { env, stdin: platform.mintEnrollmentToken() });
  assert.equal(enroll.code, 0, enroll.stderr);
  assert.ok(!enroll.stderr.includes(password) && !enroll.stdout.includes(password));
  const afterEnroll = await loggedConnects(squid, target);
  // squid logs the authenticated user: the credentials reached it and were accepted.
  assert.ok(afterEnroll.every((l) => l.includes(` ${username} `)), afterEnroll.join("\n"));

  const run = await runAgent(["--state-dir", dir.path, "--log-level", "debug", "run", "--once"], {
    env,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.ok(!run.stderr.includes(password));
  // More CONNECTs than enroll made: run went through squid too.
  await loggedConnects(squid, target, afterEnroll.length);
  assert.equal(platform.heartbeats().length, 1);
});

Deno.test({
  name:
    "a wrong or missing squid password stops enroll with one clear line, exit 4, nothing enrolled",
  ignore: skipWithout(squidAvailable()),
}, async () => {
  await using squid = await startSquid();
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const wrong = "wr0ng-pr0xy-pa55";
  const cases: Array<[string, string]> = [
    ["wrong password", `http://${squid.credentials.username}:${wrong}@${hostPort(squid.authUrl)}`],
    ["no credentials", `http://${hostPort(squid.authUrl)}`],
  ];
  for (const [what, proxy] of cases) {
    const result = await runAgent([
      "--state-dir",
      join(dir.path, "state"),
      ...enrollArgs(platform, "--timeout", "1", "--token-file", "-"),
    ], { env: { HTTPS_PROXY: proxy }, stdin: platform.mintEnrollmentToken() });
    assert.equal(result.code, 4, `${what}: ${result.stderr}`);
    const errors = result.stderr.split("\n").filter((l) => l.startsWith("error:"));
    assert.equal(errors.length, 1, `${what}: ${result.stderr}`);
    assert.match(
      errors[0]!,
      new RegExp(
        `proxy "${hostPort(squid.authUrl)}" refused the tunnel to "${
          hostPort(platform.url)
        }": proxy authentication required`,
      ),
      what,
    );
    assert.ok(!result.stderr.includes(wrong), `${what}: the password was shown`);
  }
  assert.equal(platform.agents().length, 0, "nothing enrolled");
  // squid itself refused both (407), so the test saw the real proxy's answer.
  const denied = await loggedConnects(squid, hostPort(platform.url), 1);
  assert.ok(denied.length >= 2 && denied.every((l) => /\/407 /.test(l)), denied.join("\n"));
});
