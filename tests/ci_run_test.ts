/** `.ci/run`'s verdict on deno's test summary (its --summarize mode installs and runs nothing). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "./_support/helpers.ts";

const CI_RUN = new URL("../.ci/run", import.meta.url).pathname;

async function summarize(log: string, status = 0) {
  await using dir = await tempDir();
  const path = join(dir.path, "log");
  await Deno.writeTextFile(path, log);
  const out = await new Deno.Command("bash", {
    args: [CI_RUN, "--summarize", path, String(status)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name: ".ci/run prints tests: N passed, M failed, K skipped and fails on a failure or a skip",
  ignore: Deno.build.os === "windows",
}, async () => {
  const ok = await summarize("a ... ok (1ms)\n\nok | 3 passed (2 steps) | 0 failed (5s)\n");
  assert.equal(ok.stdout, "tests: 3 passed, 0 failed, 0 skipped\n");
  assert.equal(ok.code, 0);

  const skipped = await summarize(
    "mtls gate ... ignored (0ms)\n\n\x1b[32mok\x1b[0m | 3 passed | 0 failed | 1 ignored (5s)\n",
  );
  assert.equal(skipped.stdout, "tests: 3 passed, 0 failed, 1 skipped\n");
  assert.equal(skipped.code, 1, "a skip fails CI");
  assert.match(skipped.stderr, /mtls gate \.\.\. ignored/);

  const failed = await summarize(
    "FAILED | 330 passed | 2 failed | 0 ignored | 4 filtered out (9m)\n",
    1,
  );
  assert.equal(failed.stdout, "tests: 330 passed, 2 failed, 0 skipped\n");
  assert.equal(failed.code, 1);

  // deno failing outside any test (a module that does not load) is a failure too.
  const broken = await summarize("ok | 10 passed | 0 failed (1s)\nerror: Leaking async ops\n", 1);
  assert.equal(broken.stdout, "tests: 10 passed, 1 failed, 0 skipped\n");
  assert.equal(broken.code, 1);

  const none = await summarize("error: Module not found\n", 1);
  assert.equal(none.stdout, "tests: 0 passed, 1 failed, 0 skipped\n");
  assert.equal(none.code, 1);
});

Deno.test({
  name: ".ci/run never stops processes it did not start",
  ignore: Deno.build.os === "windows",
}, async () => {
  const script = await Deno.readTextFile(CI_RUN);
  const code = script.split("\n").filter((l) => !/^\s*#/.test(l)).join("\n");
  assert.doesNotMatch(code, /\b(pkill|killall|kill)\b/);
  assert.doesNotMatch(code, /systemctl\s+(stop|kill|restart)/);
  assert.doesNotMatch(code, /service\s+\S+\s+stop/);
});
