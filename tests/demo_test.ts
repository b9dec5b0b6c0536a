import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

/** Runs `deno task demo` with `args`; returns its stdout after checking it exited 0. */
async function demo(...args: string[]): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const words = String(config.tasks.demo).split(/\s+/);
  assert.equal(words[0], "deno");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...words.slice(1), ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${stdout}\n${stderr}`);
  return stdout;
}

Deno.test("deno task demo enrolls the real agent, shows 3 heartbeats and exits 0", async () => {
  const stdout = await demo();
  const agentId = /enrolled as (\S+)/.exec(stdout)?.[1];
  assert.ok(agentId, stdout);
  assert.match(stdout, new RegExp(`agent id\\s+${agentId}`));
  assert.match(stdout, /heartbeats 3, last sequence 3/);
  for (const seq of [1, 2, 3]) {
    assert.match(
      stdout,
      new RegExp(`#${seq}\\s+\\S+\\s+memory \\d+ MiB available of \\d+ MiB, load `),
    );
  }
  assert.match(stdout, /agent exited 0 after \d+ ms/);
  assert.match(stdout, /every request and response matched contract\/openapi.yaml/);
  assert.match(stdout, /Demo finished in/);
  assert.match(
    stdout,
    /negotiated inventory delta: the platform advertised host_digest, .*\["host_digest"\]; 1 of 3 with host/,
  );
  // The token went through a file, never through argv or the output.
  assert.doesNotMatch(stdout, /oc_enr_/);
});

Deno.test("deno task demo --contract 1.0 shows the full inventory on every heartbeat", async () => {
  const stdout = await demo("--contract", "1.0");
  assert.match(stdout, /Starting the dev platform \(contract 1\.0/);
  assert.match(stdout, /negotiated full inventory: .*\[\]; 3 of 3 with host/);
  assert.match(stdout, /every request and response matched contract\/openapi.yaml/);
});
