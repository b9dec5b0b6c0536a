import assert from "node:assert/strict";
import { join } from "node:path";
import { ENV_VARS } from "../src/config/config.ts";
import { UsageError } from "../src/errors.ts";
import { denoFileSystem } from "../src/file_system.ts";
import { deleteTokenFile, resolveToken } from "../src/enrollment/enrollment_token.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { createLogger, redact } from "../src/log.ts";
import { testContext } from "./_support/context_fixture.ts";

async function withState(
  run: (state: string, store: IdentityStore) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const state = join(dir, "state");
    await Deno.mkdir(state, { mode: 0o700 });
    await run(state, new IdentityStore(state));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("resolveToken: --token-file wins over the environment, which wins over the state file", async () => {
  await withState(async (state, store) => {
    const stateToken = join(state, "enrollment.token");
    await Deno.writeTextFile(stateToken, "state-token-0123\n");
    const flagToken = join(state, "flag.token");
    await Deno.writeTextFile(flagToken, "  flag-token-0123  \n");
    const env = { [ENV_VARS.enrollmentToken]: "env-token-0123" };
    const { ctx } = testContext(state, { env });
    const fromFlag = await resolveToken(ctx, flagToken, store, denoFileSystem);
    assert.deepEqual(fromFlag, {
      token: "flag-token-0123",
      label: `file ${JSON.stringify(flagToken)} (--token-file)`,
      file: flagToken,
    });
    const fromEnv = await resolveToken(ctx, undefined, store, denoFileSystem);
    assert.deepEqual(fromEnv, {
      token: "env-token-0123",
      label: "from ONECONNECT_ENROLLMENT_TOKEN",
    });
    const fromState = await resolveToken(testContext(state).ctx, undefined, store, denoFileSystem);
    assert.deepEqual(fromState, {
      token: "state-token-0123",
      label: `file ${JSON.stringify(stateToken)}`,
      file: stateToken,
    });
    const fromStdin = await resolveToken(
      testContext(state, { stdin: "stdin-token-0123\n", env }).ctx,
      "-",
      store,
      denoFileSystem,
    );
    assert.deepEqual(fromStdin, { token: "stdin-token-0123", label: "from standard input" });
    // Every source is registered for redaction (untrimmed, as it may appear in an error).
    assert.ok(!redact("x state-token-0123 env-token-0123 stdin-token-0123").includes("token-0123"));
  });
});

Deno.test("resolveToken refuses a missing, empty, oversized or symlinked token with one clear line", async () => {
  await withState(async (state, store) => {
    const { ctx } = testContext(state);
    await assert.rejects(
      resolveToken(ctx, undefined, store, denoFileSystem),
      (e) =>
        e instanceof UsageError &&
        e.message ===
          `No enrollment token found; pass --token-file <path> (- for stdin), set ONECONNECT_ENROLLMENT_TOKEN, or put it in ${
            JSON.stringify(join(state, "enrollment.token"))
          }`,
    );
    const empty = join(state, "empty.token");
    await Deno.writeTextFile(empty, " \n");
    await assert.rejects(resolveToken(ctx, empty, store, denoFileSystem), /is empty$/);
    const big = join(state, "big.token");
    await Deno.writeTextFile(big, "x".repeat(64 * 1024 + 1));
    await assert.rejects(
      resolveToken(ctx, big, store, denoFileSystem),
      /is larger than 65536 bytes: not a token file$/,
    );
    await assert.rejects(
      resolveToken(
        testContext(state, { stdin: "x".repeat(64 * 1024 + 1) }).ctx,
        "-",
        store,
        denoFileSystem,
      ),
      / Enrollment token from standard input is larger than 65536 bytes$/,
    );
    if (Deno.build.os !== "windows") {
      const link = join(state, "link.token");
      await Deno.symlink(big, link);
      await assert.rejects(
        resolveToken(ctx, link, store, denoFileSystem),
        /it is a symbolic link; pass the real file$/,
      );
    }
    await assert.rejects(
      resolveToken(ctx, state, store, denoFileSystem),
      /it is not a regular file$/,
    );
  });
});

Deno.test("deleteTokenFile ignores a file already gone and warns when it cannot delete one", async () => {
  const logs: string[] = [];
  const logger = createLogger({ level: "debug", write: (line) => logs.push(line) });
  const gone = {
    ...denoFileSystem,
    remove: () => Promise.reject(new Deno.errors.NotFound("gone")),
  };
  await deleteTokenFile(gone, "/t/enrollment.token", logger);
  assert.deepEqual(logs, []);
  const stuck = { ...denoFileSystem, remove: () => Promise.reject(new Error("read-only")) };
  await deleteTokenFile(stuck, "/t/enrollment.token", logger);
  assert.equal(logs.length, 1);
  assert.match(logs[0]!, /Could not delete the used enrollment token file/);
});
