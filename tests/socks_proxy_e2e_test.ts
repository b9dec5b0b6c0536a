/**
 * Issue 31 §2: SOCKS5 proxies from every proxy source (HTTPS_PROXY, agent.json proxy_url, a PAC's
 * `SOCKS5`/`SOCKS` answers), through a real SOCKS server (microsocks), and unusable proxy URLs as
 * configuration errors naming where they came from.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollArgs, errorLine, runAgent, skipWithout, tempDir } from "./_support/helpers.ts";
import { MICROSOCKS, startMicrosocks } from "./_support/microsocks.ts";

const HINT =
  "expected http://, https://, socks5:// or socks5h:// and host:port, with user:password@ before the host if the proxy needs credentials";
const NEEDS_MICROSOCKS = skipWithout(MICROSOCKS !== null);

async function writeConfig(dir: string, config: Record<string, unknown>): Promise<void> {
  await Deno.writeTextFile(join(dir, "agent.json"), JSON.stringify(config), { mode: 0o600 });
}

Deno.test({
  name: "enroll and run --once go through HTTPS_PROXY=socks5:// with a user and password",
  ignore: NEEDS_MICROSOCKS,
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using socks = await startMicrosocks({ user: "alice", password: "s3cret-socks" });
    await using dir = await tempDir();
    const via = (password: string) => ({
      HTTPS_PROXY: `socks5://alice:${password}@127.0.0.1:${socks.port}`,
    });
    const enroll = await runAgent(
      ["--state-dir", dir.path, ...enrollArgs(platform, "--token-file", "-")],
      { env: via("s3cret-socks"), stdin: platform.mintEnrollmentToken() },
    );
    assert.equal(enroll.code, 0, enroll.stderr);
    const agentId = JSON.parse(await Deno.readTextFile(join(dir.path, "identity.json"))).agent_id;
    const run = await runAgent(["--state-dir", dir.path, "run", "--once"], {
      env: via("s3cret-socks"),
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(platform.heartbeats(agentId).length, 1);
    assert.ok(!`${enroll.stderr}${run.stderr}`.includes("s3cret-socks"), "the password is logged");
    // The proxy is really in the path: it refuses a wrong password, and nothing gets through.
    const refused = await runAgent(["--state-dir", dir.path, "run", "--once"], {
      env: via("wrong-password"),
    });
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(
      errorLine(refused),
      new RegExp(
        `proxy "127\\.0\\.0\\.1:${socks.port}" refused the tunnel to "127\\.0\\.0\\.1:${platform.url.port}": it refused the credentials; check the user:password in the proxy URL`,
      ),
    );
    assert.ok(!refused.stderr.includes("wrong-password"), "the password is logged");
    assert.equal(platform.heartbeats(agentId).length, 1);
  },
});

Deno.test({
  name: "socks5h:// in agent.json proxy_url carries enroll, and enroll --check names the route",
  ignore: NEEDS_MICROSOCKS,
  async fn() {
    await using platform = await startDevPlatform({ quiet: true });
    await using socks = await startMicrosocks();
    await using dir = await tempDir();
    await Deno.chmod(dir.path, 0o700);
    await writeConfig(dir.path, { proxy_url: `socks5h://127.0.0.1:${socks.port}` });
    // By name: with socks5h the proxy, not the agent, resolves it.
    const url = new URL(platform.url.href);
    url.hostname = "localhost";
    const target = { url, caFile: platform.caFile };
    const check = await runAgent(["--state-dir", dir.path, ...enrollArgs(target, "--check")]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(
      check.stdout,
      new RegExp(
        `^ok +route +socks5h://127\\.0\\.0\\.1:${socks.port} \\(from agent\\.json proxy_url\\)$`,
        "m",
      ),
    );
    const enroll = await runAgent(
      ["--state-dir", dir.path, ...enrollArgs(target, "--token-file", "-")],
      { stdin: platform.mintEnrollmentToken() },
    );
    assert.equal(enroll.code, 0, enroll.stderr);
    assert.equal(platform.agents().length, 1);
  },
});

for (const answer of ["SOCKS5", "SOCKS"]) {
  Deno.test({
    name: `a PAC answering "${answer} host:port" sends enroll through the SOCKS proxy`,
    ignore: NEEDS_MICROSOCKS,
    async fn() {
      await using platform = await startDevPlatform({ quiet: true });
      await using dir = await tempDir();
      // A PAC names no credentials: a SOCKS server that asks for none.
      await using open = await startMicrosocks();
      const pac = join(dir.path, "proxy.pac");
      await Deno.writeTextFile(
        pac,
        `function FindProxyForURL(url, host) { return "${answer} 127.0.0.1:${open.port}"; }`,
      );
      const state = join(dir.path, "state");
      const enroll = await runAgent(
        ["--state-dir", state, ...enrollArgs(platform, "--proxy-pac", pac, "--token-file", "-")],
        { stdin: platform.mintEnrollmentToken() },
      );
      assert.equal(enroll.code, 0, enroll.stderr);
      const check = await runAgent([
        "--state-dir",
        state,
        ...enrollArgs(platform, "--check", "--proxy-pac", pac),
      ]);
      assert.match(
        check.stdout,
        new RegExp(`^ok +route +socks5://127\\.0\\.0\\.1:${open.port} \\(from PAC `, "m"),
      );
      // Proof it is not direct: with the PAC's SOCKS server gone, nothing gets through.
      await open[Symbol.asyncDispose]();
      const run = await runAgent(["--state-dir", state, "run", "--once"], {
        env: { ONECONNECT_PROXY_PAC: pac },
      });
      assert.equal(run.code, 4, run.stderr);
      assert.match(errorLine(run), new RegExp(`proxy "127\\.0\\.0\\.1:${open.port}"`));
    },
  });
}

Deno.test("an unusable proxy URL is a configuration error (exit 2) naming its variable or setting", async () => {
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o700);
  const enroll = ["--state-dir", dir.path, "enroll", "--url", "https://platform.example.com"];
  const token = { ONECONNECT_ENROLLMENT_TOKEN: "tok-123456789" };
  for (
    const [name, value, problem] of [
      ["HTTPS_PROXY", "ftp://proxy.example.com:21", 'the scheme "ftp" is not supported'],
      ["https_proxy", "http://[garbage", "not a URL"],
      ["HTTPS_PROXY", "socks4://user:hunter2@proxy:1080", 'the scheme "socks4" is not supported'],
    ]
  ) {
    const r = await runAgent(enroll, { env: { ...token, [name!]: value! } });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(errorLine(r), `error: Invalid proxy URL (${name}): ${problem}; ${HINT}`);
    assert.ok(!r.stderr.includes("hunter2"));
  }
  await writeConfig(dir.path, { proxy_url: "gopher://proxy:70" });
  const r = await runAgent(["--state-dir", dir.path, "status"]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(
    r.stderr,
    `error: Invalid proxy URL (agent.json): the scheme "gopher" is not supported; ${HINT}\n`,
  );
});
