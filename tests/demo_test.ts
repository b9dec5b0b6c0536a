import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno task demo enrolls the real agent, shows 3 heartbeats and exits 0", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const words = String(config.tasks.demo).split(/\s+/);
  assert.equal(words[0], "deno");
  const out = await new Deno.Command(Deno.execPath(), {
    args: words.slice(1),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${stdout}\n${stderr}`);
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
  // CPU from the second beat on (the first has no interval), and the disks df reported.
  assert.match(stdout, /#1 .*cpu n\/a \(first beat\)/);
  assert.match(stdout, /#3 .*cpu \d+\.\d% busy/);
  if (Deno.build.os === "linux") {
    assert.match(stdout, /#1 .*, filesystems\n/);
    assert.match(stdout, /disk {7}\/ \(\w+\) \d+ MiB available of \d+ MiB, \d+% used/);
  }
  assert.match(stdout, /agent exited 0 after \d+ ms/);
  assert.match(stdout, /every request and response matched contract\/openapi.yaml/);
  assert.match(stdout, /Demo finished in/);
  // The token went through a file, never through argv or the output.
  assert.doesNotMatch(stdout, /oc_enr_/);
});
