import assert from "node:assert/strict";
import { PAGE, renderSection, replaceSection, repoPath } from "../tasks/bench_readme.ts";

Deno.test("docs/footprint.md's bench table is the one generated from the committed bench/results.json", async () => {
  const results = JSON.parse(await Deno.readTextFile(repoPath("bench/results.json")));
  const page = await Deno.readTextFile(repoPath(PAGE));
  assert.equal(
    replaceSection(page, renderSection(results)),
    page,
    `${PAGE} and bench/results.json disagree: run deno task bench-readme`,
  );
});

Deno.test("the committed bench/results.json names the commit it measured and a full run", async () => {
  const results = JSON.parse(await Deno.readTextFile(repoPath("bench/results.json")));
  assert.match(results.commit.sha, /^[0-9a-f]{40}$/);
  assert.equal(results.mode, "full");
  for (const f of results.figures) {
    if (f.judged && f.measured === null) assert.equal(results.all_judged_pass, false, f.id);
  }
});
