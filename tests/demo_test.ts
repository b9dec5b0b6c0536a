import assert from "node:assert/strict";
import { repoPath, SPAWN_DEADLINE_MS, withDeadline } from "./_support/helpers.ts";

const ROOT = repoPath();

/** Runs `deno task demo` with `args`; returns its stdout after checking it exited 0. */
async function demo(...args: string[]): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const words = String(config.tasks.demo).split(/\s+/);
  assert.equal(words[0], "deno");
  const child = new Deno.Command(Deno.execPath(), {
    args: [...words.slice(1), ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await withDeadline(child, SPAWN_DEADLINE_MS, "deno task demo").output();
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
  // The platform refuses sequences 1 and 2 (the outage the demo shows).
  assert.match(stdout, /heartbeats 3, last sequence 5/);
  for (const seq of [3, 4, 5]) {
    assert.match(
      stdout,
      new RegExp(`#${seq}\\s+\\S+\\s+memory \\d+ MiB available of \\d+ MiB, load `),
    );
  }
  // CPU from the second beat on (the first, refused, had no interval), and the disks df
  // reported: the refused beats carried them, so the first accepted one does.
  assert.match(stdout, /#3 .*cpu \d+\.\d% busy/);
  if (Deno.build.os === "linux") {
    assert.match(stdout, /#3 .*, filesystems\n/);
    assert.match(stdout, /disk {7}\/ \(\w+\) \d+ MiB available of \d+ MiB, \d+% used/);
  }
  assert.match(stdout, /agent exited 0 after \d+ ms/);
  assert.match(stdout, /every request and response matched contract\/openapi.yaml/);
  assert.match(stdout, /Demo finished in/);
  assert.match(
    stdout,
    /negotiated inventory delta: the platform advertised host_digest, .*\["host_digest","gap","clock_offset"\]; 1 of 3 with host/,
  );
  assert.match(stdout, /heartbeat #3 received \(\d+ bytes, with host, gap: 2 failed attempts\)/);
  assert.match(
    stdout,
    /gap {8}heartbeat #3 reported the outage: since \S+ \([\d.]+ s\), 2 failed attempts, last error http 503 unavailable; host uptime \d+ s /,
  );
  // The token went through a file, never through argv or the output.
  assert.doesNotMatch(stdout, /oc_enr_/);
});

Deno.test("deno task demo --contract 1.0 shows the full inventory on every heartbeat", async () => {
  const stdout = await demo("--contract", "1.0");
  assert.match(stdout, /Starting the dev platform \(contract 1\.0/);
  assert.match(stdout, /negotiated full inventory: .*\[\]; 3 of 3 with host/);
  assert.match(stdout, /gap {8}none sent: the platform did not advertise "gap"/);
  assert.doesNotMatch(stdout, /, gap: /);
  assert.match(stdout, /every request and response matched contract\/openapi.yaml/);
});
