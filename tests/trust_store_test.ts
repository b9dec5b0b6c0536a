/**
 * The promise "the environment cannot widen trust" names its variables in docs/security.md and
 * docs/failure_behaviour.md ("Pinning"): the set the agent clears (src/trust/trust_store.ts) must be
 * exactly that list, and every one of them must be in the --allow-env list that lets the agent
 * clear it.
 */
import assert from "node:assert/strict";
import { TRUST_VARIABLES } from "../src/trust/trust_store.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";
import { childEnv } from "./_support/helpers.ts";

/** The backquoted names in `text`. */
function codeNames(text: string): string[] {
  return [...text.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]!).sort();
}

const failureDoc = await Deno.readTextFile(
  new URL("../docs/failure_behaviour.md", import.meta.url),
);
const securityDoc = await Deno.readTextFile(new URL("../docs/security.md", import.meta.url));

Deno.test("the variables the agent clears are exactly the threat model's list (docs/security.md)", () => {
  const bullet = /### The environment cannot widen trust\n[\s\S]*?\n\|/.exec(securityDoc)?.[0];
  assert.ok(bullet, 'docs/security.md has the "The environment cannot widen trust" section');
  const cleared = /The first thing `main\.ts` does\s+is\s+clear ([\s\S]*?) to empty/.exec(bullet)
    ?.[1];
  assert.ok(cleared, "the section says which variables main.ts clears");
  assert.deepEqual(codeNames(cleared), [...TRUST_VARIABLES].sort());
});

Deno.test("every variable the agent clears is in docs/failure_behaviour.md's and the launch flags' --allow-env", async () => {
  const why = /This is why ([\s\S]*?) are in the `--allow-env` list/.exec(failureDoc)?.[1];
  assert.ok(
    why,
    "docs/failure_behaviour.md's Pinning bullet names the --allow-env trust variables",
  );
  assert.deepEqual(
    codeNames(why).filter((name) => name !== "SSLKEYLOGFILE"),
    [...TRUST_VARIABLES].sort(),
  );
  const allowEnv = (await agentPermissionFlags()).find((f) => f.startsWith("--allow-env="));
  assert.ok(allowEnv, "the launch flags hold a narrow --allow-env list");
  const granted = allowEnv.slice("--allow-env=".length).split(",");
  for (const name of TRUST_VARIABLES) {
    assert.ok(granted.includes(name), `${name} not in --allow-env`);
  }
});

/** Runs `code` in a fresh Deno process (the trust state is per process) importing trust_store.ts. */
async function inFreshProcess(code: string): Promise<string> {
  const url = new URL("../src/trust/trust_store.ts", import.meta.url).href;
  const log = new URL("../src/log.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import * as t from ${JSON.stringify(url)}; import { silentLogger } from ${
        JSON.stringify(log)
      };\nt.neutraliseTrustEnvironment();\n${code}`,
    ],
    env: childEnv({ NO_COLOR: "1" }),
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return text;
}

Deno.test("a pinned identity's process names no root store to Deno (DENO_TLS_CA_STORE ',')", async () => {
  for (const [roots, value] of [["none", ","], ["system", "system"], ["mozilla", "mozilla"]]) {
    const seen = await inFreshProcess(
      `t.selectRootStore(${
        JSON.stringify(roots)
      }); console.log(Deno.env.get("DENO_TLS_CA_STORE"));`,
    );
    assert.equal(seen, value, `store ${roots}`);
  }
});

Deno.test("a client wanting a narrower root store than the process built is refused", async () => {
  const seen = await inFreshProcess(`
    t.createRootedHttpClient({}, "system", silentLogger);
    try {
      t.createRootedHttpClient({}, "none", silentLogger);
      console.log("accepted");
    } catch (e) {
      console.log(e.constructor.name + ": " + e.message);
    }`);
  assert.equal(
    seen,
    "UsageError: Cannot guarantee that only the pinned CAs are trusted: this process already trusts the system root store",
  );
});
