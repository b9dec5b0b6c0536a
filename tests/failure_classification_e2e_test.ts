/**
 * Issue 31 §1: `enroll --check` and `enroll` share one classification of failures and say the
 * same thing about the same fault (a wrong CA file, the wrong scheme for a port, a wrong clock),
 * against servers with openssl-made certificates and under faketime.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import {
  childEnv,
  type CliResult,
  errorLine,
  findTool,
  MAIN,
  RUN_DEADLINE_MS,
  runAgent,
  skipWithout,
  tempDir,
  withDeadline,
} from "./_support/helpers.ts";
import { opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";
import { splitPemBundle } from "../src/trust/certificates.ts";

const TOKEN = { ONECONNECT_ENROLLMENT_TOKEN: "tok-never-valid-123456" };

/** `enroll --check` and `enroll` (token in the environment) with the same target flags. */
async function checkAndEnroll(target: string[]): Promise<{ check: CliResult; enroll: CliResult }> {
  await using dir = await tempDir();
  const state = ["--state-dir", join(dir.path, "state")];
  const check = await runAgent([...state, "enroll", "--check", ...target], { env: TOKEN });
  const enroll = await runAgent([...state, "enroll", "--timeout", "5", ...target], { env: TOKEN });
  return { check, enroll };
}

function checkLine(stdout: string, name: string): string {
  const line = stdout.split("\n").find((l) => new RegExp(`^\\w+ +${name} `).test(l));
  assert.ok(line, `no ${name} line in:\n${stdout}`);
  return line.replace(/^\w+ +\w+ +/, "");
}

/** An https server presenting the openssl PKI's server chain (leaf "localhost" by "Test Issuing CA"). */
async function opensslServer() {
  const pki = await sharedOpensslPki();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: pki.serverChain.certPem,
    key: pki.serverChain.keyPem,
    onListen() {},
  }, () => Response.json({ status: "ok", time: new Date().toISOString() }));
  return {
    pki,
    url: `https://127.0.0.1:${server.addr.port}/`,
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

const CA_FILE_CASES: Array<
  [string, (pki: Awaited<ReturnType<typeof sharedOpensslPki>>) => string, string]
> = [
  [
    "the server's own certificate",
    (pki) => splitPemBundle(pki.serverChain.certPem)[0]!,
    `the CA file holds the server's own certificate, not the CA that issued it: give the certificate of "Test Issuing CA" instead`,
  ],
  [
    "a certificate that is not a CA",
    (pki) => pki.notCa.certPem,
    `the CA file holds a server certificate ("Test Not A CA"), not a CA: give the certificate of "Test Issuing CA", the CA that issued the platform's`,
  ],
  [
    "another CA",
    (pki) => pki.expired.certPem,
    `the CA file holds "Test Expired CA", not "Test Issuing CA", which issued it: give the CA certificate of "Test Issuing CA"`,
  ],
];

for (const [what, pem, reason] of CA_FILE_CASES) {
  Deno.test({
    name: `enroll and enroll --check name a CA file holding ${what}, without blaming a proxy`,
    ignore: skipWithout(opensslAvailable()),
    async fn() {
      await using server = await opensslServer();
      await using dir = await tempDir();
      const caFile = join(dir.path, "ca.pem");
      await Deno.writeTextFile(caFile, pem(server.pki));
      const { check, enroll } = await checkAndEnroll(["--url", server.url, "--ca-file", caFile]);
      const presented =
        `certificate issued by "Test Issuing CA" (subject "localhost"), but ${reason}`;
      assert.equal(check.code, 4, check.stderr);
      assert.equal(
        checkLine(check.stdout, "tls"),
        `certificate of 127.0.0.1:${server.port} not accepted with the CA file (1 certificate): ${presented}`,
      );
      assert.equal(enroll.code, 4, enroll.stderr);
      assert.equal(
        errorLine(enroll),
        `error: Cannot enroll: TLS handshake with "127.0.0.1:${server.port}" failed: ${presented}`,
      );
      assert.ok(!`${check.stdout}${enroll.stderr}`.includes("proxy is"), "a proxy is guessed");
    },
  });
}

Deno.test("https:// to a plain-HTTP port: enroll and enroll --check say it is not TLS", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("plain"),
  );
  const port = server.addr.port;
  const { check, enroll } = await checkAndEnroll(["--url", `https://127.0.0.1:${port}/`]);
  const reason =
    "the server does not speak TLS on this port: is it a plain-HTTP port? (received corrupt message of type InvalidContentType)";
  assert.equal(check.code, 4, check.stderr);
  assert.equal(
    checkLine(check.stdout, "tls"),
    `certificate of 127.0.0.1:${port} not accepted with the operating system's trust store: ${reason}`,
  );
  assert.equal(enroll.code, 4, enroll.stderr);
  assert.equal(
    errorLine(enroll),
    `error: Cannot enroll: TLS handshake with "127.0.0.1:${port}" failed: ${reason}`,
  );
});

Deno.test({
  name:
    "http:// to a TLS port: enroll and enroll --check say the port expects TLS, without retrying",
  ignore: skipWithout(opensslAvailable()),
  async fn() {
    await using server = await opensslServer();
    const { check, enroll } = await checkAndEnroll(["--url", `http://127.0.0.1:${server.port}/`]);
    const reason = new RegExp(
      `^"127\\.0\\.0\\.1:${server.port}" did not answer plain HTTP \\([^)]+\\): the port probably expects TLS; use https://$`,
    );
    assert.equal(check.code, 4, check.stderr);
    assert.match(checkLine(check.stdout, "health"), reason);
    assert.equal(enroll.code, 4, enroll.stderr);
    const line = errorLine(enroll).replace(/^error: Cannot enroll: /, "");
    assert.match(line, reason);
    assert.ok(!enroll.stderr.includes("retrying"), enroll.stderr);
  },
});

const FAKETIME = findTool("faketime");

/** The CLI under `faketime -f <offset>` (libfaketime moves this process's clock only). */
async function runAgentAt(offset: string, args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(FAKETIME!, {
    args: [
      "-f",
      offset,
      Deno.execPath(),
      "run",
      "--quiet",
      ...await agentPermissionFlags(),
      MAIN,
      ...args,
    ],
    env: childEnv({ NO_COLOR: "1", ...env }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await withDeadline(child, RUN_DEADLINE_MS, `faketime ${args}`).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name:
    "a clock two days behind: enroll --check fails the clock, and enroll says clock, not rustls",
  ignore: skipWithout(FAKETIME !== null),
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using dir = await tempDir();
    const target = ["enroll", "--url", platform.url.href, "--ca-file", platform.caFile];
    const state = ["--state-dir", join(dir.path, "state")];
    const check = await runAgentAt("-2d", [...state, ...target, "--check"]);
    assert.equal(check.code, 4, check.stderr);
    assert.match(
      checkLine(check.stdout, "tls"),
      /: certificate is not valid yet \(valid from \S+\); check this host's clock \(NotValidYet\)$/,
    );
    assert.match(
      checkLine(check.stdout, "clock"),
      /^this host's clock reads \S+, outside the platform certificate's validity: certificates may look not yet valid or expired: fix time sync \(NTP\) on this host$/,
    );
    assert.ok(!check.stdout.includes("verification time"), check.stdout);
    const enroll = await runAgentAt("-2d", [...state, ...target], {
      ONECONNECT_ENROLLMENT_TOKEN: platform.mintEnrollmentToken(),
    });
    assert.equal(enroll.code, 4, enroll.stderr);
    assert.match(
      errorLine(enroll),
      /^error: Cannot enroll: TLS handshake with "127\.0\.0\.1:\d+" failed: certificate is not valid yet \(valid from \S+\); check this host's clock \(NotValidYet\)$/,
    );
    assert.deepEqual(platform.agents(), []);
  },
});
