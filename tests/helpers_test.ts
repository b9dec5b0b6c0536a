import assert from "node:assert/strict";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { enrollAgent, runAgent, spawnAgent, tempDir } from "./_support/helpers.ts";

Deno.test("a spawned agent that outlives its deadline is killed and fails the test", async () => {
  await using platform = await startDevPlatform({ quiet: true });
  await using dir = await tempDir();
  await enrollAgent(platform, dir.path);
  // `run` never ends on its own.
  await assert.rejects(
    () => runAgent(["--state-dir", dir.path, "run"], { deadlineMs: 3_000 }),
    /^Error: oneconnect-agent --state-dir \S+ run still running after 3 s: killed, test failed$/,
  );
  const child = spawnAgent(["--state-dir", dir.path, "run"], { deadlineMs: 3_000 });
  await assert.rejects(() => child.status, /still running after 3 s/);
  await assert.rejects(() => child.output(), /still running after 3 s/);
});
