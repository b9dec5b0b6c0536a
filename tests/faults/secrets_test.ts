/**
 * Secrets: a whole lifecycle at `--log-level debug` (text and JSON), including a hostile platform
 * that echoes the credential back, with every stdout/stderr byte, every state file besides the
 * identity, and `/proc/<pid>/cmdline` of the running agent checked for the enrollment token, the
 * service account token, the private key and the Authorization value.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Harness, hostileServer, listTree } from "../_support/fault_helpers.ts";
import { enrollArgs, until } from "../_support/helpers.ts";

/** The command lines of `pid` and every process below it. */
function cmdlines(pid: number): string[] {
  const out: string[] = [];
  const visit = (p: number) => {
    try {
      out.push(Deno.readTextFileSync(`/proc/${p}/cmdline`).replaceAll("\0", " "));
      for (const task of Deno.readDirSync(`/proc/${p}/task`)) {
        const children = Deno.readTextFileSync(`/proc/${p}/task/${task.name}/children`).trim();
        for (const child of children === "" ? [] : children.split(/\s+/)) visit(Number(child));
      }
    } catch {
      // exited meanwhile
    }
  };
  visit(pid);
  return out;
}

Deno.test({
  name: "no secret in any output, state file or /proc cmdline across the whole lifecycle",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using h = await Harness.open();

    // enroll with the token in a file, held by the platform so its cmdline can be read: 5 s, since
    // the agent exits (and /proc/<pid> goes) as soon as the answer comes, on however busy a host.
    h.platform.injectFault({ route: "enroll", delayMs: 5_000, times: 1 });
    const token = h.token();
    const enrollFile = join(h.root, "token");
    await Deno.writeTextFile(enrollFile, token, { mode: 0o600 });
    {
      const run = h.spawn(enrollArgs(h.platform, "--token-file", enrollFile));
      await run.waitForLine(/"msg":"Contacting platform"/);
      const lines = cmdlines(run.child.pid);
      assert.ok(lines.some((l) => l.includes("enroll")), lines.join("\n"));
      for (const line of lines) h.secrets.assertAbsent(line, "enroll cmdline");
      const end = await run.exited();
      assert.equal(end.code, 0, end.stderr);
    }
    const first = await h.identity();
    h.secrets.addIdentity(first);
    assert.ok(h.secrets.size >= 4);

    // --force via the environment and via <state-dir>/enrollment.token, in text format.
    let result = await h.cli(
      enrollArgs(h.platform, "--force"),
      { env: { ONECONNECT_ENROLLMENT_TOKEN: h.token() } },
    );
    assert.equal(result.code, 0, result.stderr);
    h.secrets.addIdentity(await h.identity());
    await Deno.writeTextFile(join(h.stateDir, "enrollment.token"), h.token(), { mode: 0o600 });
    result = await h.cli(enrollArgs(h.platform, "--force"));
    assert.equal(result.code, 0, result.stderr);
    const identity = await h.identity();
    h.secrets.addIdentity(identity);
    const agentId = identity.agent_id as string;

    // A running agent: its cmdline while beating, through a 503 and a 401 with detail.
    h.platform.injectFault({ route: "heartbeat", status: 503, retryAfter: "1", times: 1 });
    {
      const run = h.spawn(["run", "--interval", "1"]);
      await until(() => h.platform.heartbeats(agentId).length >= 2, "two heartbeats");
      const lines = cmdlines(run.child.pid);
      assert.ok(lines.some((l) => l.includes(" run ")), lines.join("\n"));
      for (const line of lines) h.secrets.assertAbsent(line, "run cmdline");
      run.kill("SIGTERM");
      const end = await run.exited();
      assert.equal(end.code, 0, end.stderr);
    }

    // A hostile platform echoing the Authorization header in every place it can.
    await using echo = hostileServer((req) => {
      const auth = req.headers.get("authorization") ?? "none";
      return new Response(
        JSON.stringify({
          title: auth,
          detail: `you sent ${auth}`,
          code: auth,
          service_account_token: auth.replace(/^Bearer /, ""),
          echo: auth,
        }),
        {
          status: 401,
          headers: {
            "content-type": "application/problem+json",
            "x-echo": auth,
            "retry-after": auth,
          },
        },
      );
    });
    const url = identity.platform_url as string;
    await h.editIdentity((i) => i.platform_url = echo.url);
    result = await h.cli(["run", "--once"]);
    // Its `code` is no rejection code of the contract: a failed attempt (4), not a rejection.
    assert.equal(result.code, 4, result.stderr);
    assert.match(
      result.stderr,
      /^error: Cannot send heartbeat: platform answered 401: you sent Bearer \[REDACTED\]/m,
    );
    result = await h.cli(["--log-format", "json", "run", "--once"]);
    assert.equal(result.code, 4, result.stderr);
    assert.ok(echo.requests() >= 2);
    await h.editIdentity((i) => i.platform_url = url);

    for (const args of [["status"], ["status", "--json"], ["inventory"], ["run", "--once"]]) {
      result = await h.cli(args);
      assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
    }
    // Every file under the test root besides the identity and the token files we wrote.
    for (const [rel, info] of await listTree(h.root)) {
      if (!info.isFile || rel === "token" || rel.endsWith("identity.json")) continue;
      h.secrets.assertAbsent(await Deno.readTextFile(join(h.root, rel)), rel);
    }
    result = await h.cli(["unenroll", "--yes"]);
    assert.equal(result.code, 0, result.stderr);
  },
});
