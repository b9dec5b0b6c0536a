/** tasks/mutate.ts on a tiny fixture (tests/fixtures/mutate): one mutant killed, one surviving. */
import assert from "node:assert/strict";
import { listProblems, runMutations, summary } from "../tasks/mutate.ts";
import type { Mutation } from "../tasks/mutations/mutation.ts";

const ROOT = new URL("./fixtures/mutate", import.meta.url).pathname;
const TESTS = ["tests/grant_checks.ts"];

const killable: Mutation = {
  promise: "only an admin sees secrets",
  file: "src/grant.ts",
  original: 'role === "admin"',
  replacement: 'role !== "nobody"',
  tests: TESTS,
};
const untested: Mutation = {
  promise: "audit labels are upper case",
  file: "src/grant.ts",
  original: "role.toUpperCase()",
  replacement: "role.toLowerCase()",
  tests: TESTS,
};

Deno.test("mutate kills a mutant its tests notice, reports a survivor, and leaves the tree alone", async () => {
  const before = await Deno.readTextFile(`${ROOT}/src/grant.ts`);
  const lines: string[] = [];
  const results = await runMutations({
    root: ROOT,
    mutations: [killable, untested],
    log: (line) => lines.push(line),
  });
  assert.deepEqual(results.map((r) => r.outcome), ["killed", "survived"]);
  assert.deepEqual(results[0]!.failures, ["maySeeSecrets admits only an admin"]);
  assert.equal(await Deno.readTextFile(`${ROOT}/src/grant.ts`), before);
  assert.match(
    lines[1]!,
    /^1\/2 KILLED src\/grant\.ts: only an admin sees secrets \(.* s\) by "maySeeSecrets admits only an admin"$/,
  );
  assert.equal(
    summary(results),
    'mutation score: 1/2 killed (50%)\nsurvived: src/grant.ts: audit labels are upper case: "role.toUpperCase()" -> "role.toLowerCase()" (tests: tests/grant_checks.ts)',
  );
});

Deno.test("mutate refuses a list whose original text is not in the file exactly once", async () => {
  const missing = { ...killable, original: 'role === "root"' };
  assert.deepEqual(await listProblems(ROOT, [missing, { ...untested, tests: [] }]), [
    `mutation 1 (src/grant.ts: only an admin sees secrets): "role === \\"root\\"" occurs 0 times, not once`,
    "mutation 2 (src/grant.ts: audit labels are upper case): no covering tests",
  ]);
  await assert.rejects(
    () => runMutations({ root: ROOT, mutations: [missing] }),
    /^Error: Unusable mutation list:\nmutation 1 /,
  );
});
