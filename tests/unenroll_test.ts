import assert from "node:assert/strict";
import { join } from "node:path";
import { AgentError, UsageError } from "../src/errors.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { unenrollCommand } from "../src/commands/unenroll.ts";
import { rejectsWith, tempDir } from "./_support/helpers.ts";
import { testContext } from "./_support/context_fixture.ts";

const VALID_LOOKING = {
  version: 1,
  agent_id: "agent-9",
};

const failure = (promise: Promise<unknown>) => rejectsWith(promise, AgentError);

async function enrolledDir(path: string): Promise<IdentityStore> {
  const store = new IdentityStore(join(path, "state"));
  await store.ensureStateDir();
  // A damaged identity must be removable too, so the file need not be loadable here.
  await Deno.writeTextFile(store.identityPath, JSON.stringify(VALID_LOOKING), { mode: 0o600 });
  await Deno.writeTextFile(store.secretFilePath("status.json"), "{}", { mode: 0o600 });
  return store;
}

Deno.test("unenroll --yes removes identity and status and says which files", async () => {
  await using dir = await tempDir();
  const store = await enrolledDir(dir.path);
  const { ctx, out } = testContext(store.stateDir);
  await unenrollCommand(ctx, { yes: true, localOnly: false });
  assert.deepEqual(out, [
    "platform: not contacted (the identity file cannot be loaded)\n",
    `removed ${store.identityPath}\n`,
    `removed ${store.secretFilePath("status.json")}\n`,
    "unenrolled (unknown agent id)\n",
  ]);
  assert.equal(await store.exists(), false);
});

Deno.test("unenroll without --yes refuses when stdin is not a terminal", async () => {
  await using dir = await tempDir();
  const store = await enrolledDir(dir.path);
  const { ctx, out } = testContext(store.stateDir, { terminal: false });
  const e = await failure(unenrollCommand(ctx, { yes: false, localOnly: false }));
  assert.ok(e instanceof UsageError);
  assert.match(e.message, /not a terminal; pass --yes$/);
  assert.deepEqual(out, []);
  assert.equal(await store.exists(), true);
});

Deno.test("unenroll asks y/N on a terminal and only y removes", async () => {
  await using dir = await tempDir();
  const store = await enrolledDir(dir.path);
  const prompts: string[] = [];
  for (const answer of ["\n", "n\n", "nope\n", ""]) {
    const { ctx } = testContext(store.stateDir, { terminal: true, stdin: answer });
    const e = await failure(
      unenrollCommand(ctx, { yes: false, localOnly: false }, {
        writePrompt: (t) => prompts.push(t),
      }),
    );
    assert.equal(e.message, "Unenroll cancelled: nothing was removed");
    assert.equal(await store.exists(), true);
  }
  assert.equal(prompts.length, 4);
  assert.match(prompts[0]!, /^Remove the identity of this agent from ".*state"\? \[y\/N\] $/);

  const { ctx, out } = testContext(store.stateDir, { terminal: true, stdin: "Y\r\n" });
  await unenrollCommand(ctx, { yes: false, localOnly: false }, { writePrompt: () => {} });
  assert.equal(await store.exists(), false);
  assert.equal(out.at(-1), "unenrolled (unknown agent id)\n");
});

Deno.test("unenroll with nothing to remove succeeds and says so (repeatable)", async () => {
  await using dir = await tempDir();
  const state = join(dir.path, "state");
  const { ctx, out } = testContext(state);
  await unenrollCommand(ctx, { yes: false, localOnly: false });
  assert.deepEqual(out, [`nothing to remove: no identity in ${JSON.stringify(state)}\n`]);
});
