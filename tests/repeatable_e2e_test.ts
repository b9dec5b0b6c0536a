/**
 * Issue 31 §5: the commands configuration management runs on every pass are repeatable: a second
 * `enroll` to the same platform succeeds without spending anything, `unenroll` with nothing to
 * remove succeeds, and stdout tells "changed" from "unchanged" (docs/operations.md's Ansible task).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollArgs, errorLine, runAgent, tempDir } from "./_support/helpers.ts";

Deno.test("enroll twice to the same platform: the second exits 0, already enrolled, no token spent", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const state = ["--state-dir", dir.path];
  const first = await runAgent([...state, ...enrollArgs(platform, "--token-file", "-")], {
    stdin: platform.mintEnrollmentToken(),
  });
  assert.equal(first.code, 0, first.stderr);
  const agentId = JSON.parse(await Deno.readTextFile(join(dir.path, "identity.json"))).agent_id;
  assert.equal(first.stdout, `enrolled as ${agentId}\n`);

  // The same task again, with a token that would enroll a second agent if it were spent.
  const token = platform.mintEnrollmentToken();
  const requests = platform.requestCount;
  const again = await runAgent([...state, ...enrollArgs(platform, "--token-file", "-")], {
    stdin: token,
  });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, `already enrolled as ${agentId}\n`);
  assert.equal(platform.requestCount, requests, "the platform was contacted");
  assert.equal(platform.agents().length, 1);

  // Another platform: exit 6, as before, naming both.
  const other = { url: new URL("https://127.0.0.1:9/"), caFile: platform.caFile };
  const moved = await runAgent([...state, ...enrollArgs(other, "--token-file", "-")], {
    stdin: token,
  });
  assert.equal(moved.code, 6, moved.stderr);
  assert.equal(
    errorLine(moved),
    `error: Already enrolled as ${JSON.stringify(agentId)} in ${
      JSON.stringify(dir.path)
    } with another platform (${
      JSON.stringify(platform.url.href)
    }); pass --force to enroll with "https://127.0.0.1:9/" and replace it`,
  );

  // --force re-enrolls with the unspent token.
  const forced = await runAgent(
    [...state, ...enrollArgs(platform, "--force", "--token-file", "-")],
    { stdin: token },
  );
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /^enrolled as /);
  assert.notEqual(forced.stdout, `enrolled as ${agentId}\n`);
});

Deno.test("unenroll twice: the second has nothing to remove and exits 0", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  const state = ["--state-dir", dir.path];
  const enroll = await runAgent([...state, ...enrollArgs(platform, "--token-file", "-")], {
    stdin: platform.mintEnrollmentToken(),
  });
  assert.equal(enroll.code, 0, enroll.stderr);
  const first = await runAgent([...state, "unenroll", "--yes"]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^unenrolled /m);
  const second = await runAgent([...state, "unenroll", "--yes"]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout, `nothing to remove: no identity in ${JSON.stringify(dir.path)}\n`);
  assert.equal(second.stderr, "");
});
