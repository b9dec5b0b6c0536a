/** `.ci/run`'s verdict on deno's test summary (its --summarize mode installs and runs nothing). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { repoPath, tempDir } from "./_support/helpers.ts";

const CI_RUN = repoPath(".ci", "run");

async function summarize(log: string, status = 0, ...more: Array<[string, number]>) {
  await using dir = await tempDir();
  const args: string[] = [];
  for (const [i, [text, code]] of [[log, status] as [string, number], ...more].entries()) {
    const path = join(dir.path, `log-${i}`);
    await Deno.writeTextFile(path, text);
    args.push(path, String(code));
  }
  const out = await new Deno.Command("bash", {
    args: [CI_RUN, "--summarize", ...args],
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
  name: ".ci/run sums the cross-target stage's test runs into its one summary line",
  ignore: Deno.build.os === "windows",
}, async () => {
  const main = "ok | 300 passed | 0 failed | 2 filtered out (9m)\n";
  const ok = await summarize(main, 0, ["ok | 2 passed | 0 failed (2m)\n", 0], [
    "ok | 1 passed | 0 failed | 1 filtered out (40s)\n",
    0,
  ]);
  assert.equal(ok.stdout, "tests: 303 passed, 0 failed, 0 skipped\n");
  assert.equal(ok.code, 0);

  // The arm64 agent failing fails CI, whatever the main suite did.
  const arm = await summarize(main, 0, ["FAILED | 1 passed | 1 failed (3m)\n", 1]);
  assert.equal(arm.stdout, "tests: 301 passed, 1 failed, 0 skipped\n");
  assert.equal(arm.code, 1);

  // A stage that could not start (no summary in its log) is a failure, not nothing.
  const setup = await summarize(main, 0, ["cross-target arm64: cannot mount binfmt_misc\n", 1]);
  assert.equal(setup.stdout, "tests: 300 passed, 1 failed, 0 skipped\n");
  assert.equal(setup.code, 1);
  assert.match(setup.stderr, /no test summary in \S+log-1 \(exit status 1\)/);

  // A skip in a stage fails CI like one in the main suite.
  const skipped = await summarize(main, 0, [
    "x ... ignored (0ms)\nok | 1 passed | 0 failed | 1 ignored (1s)\n",
    0,
  ]);
  assert.equal(skipped.stdout, "tests: 301 passed, 0 failed, 1 skipped\n");
  assert.equal(skipped.code, 1);
});

Deno.test({
  name: ".ci/run never stops processes it did not start",
  ignore: Deno.build.os === "windows",
}, async () => {
  for (const path of [CI_RUN, repoPath(".ci", "cross_target.sh")]) {
    const script = await Deno.readTextFile(path);
    const code = script.split("\n").filter((l) => !/^\s*#/.test(l)).join("\n");
    assert.doesNotMatch(code, /\b(pkill|killall|kill)\b/, path);
    assert.doesNotMatch(code, /systemctl\s+(stop|kill|restart)/, path);
    assert.doesNotMatch(code, /service\s+\S+\s+stop/, path);
    // Wine's server is waited for (-w), never killed (-k).
    assert.doesNotMatch(code, /wineserver\S*\s+-k/, path);
  }
});
