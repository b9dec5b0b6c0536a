import assert from "node:assert/strict";
import { exposedGc, HeapHousekeeping } from "../src/heartbeat/heap_housekeeping.ts";
import { agentPermissionFlags } from "../tasks/permissions.ts";

Deno.test("heap housekeeping collects at most once per period, counted from its creation", () => {
  let now = 1_000;
  let collections = 0;
  const h = new HeapHousekeeping(() => collections++, () => now, 300_000);
  assert.equal(h.collectIfDue(), false);
  now += 299_999;
  assert.equal(h.collectIfDue(), false);
  now += 1;
  assert.equal(h.collectIfDue(), true);
  assert.equal(h.collectIfDue(), false);
  now += 300_000;
  assert.equal(h.collectIfDue(), true);
  assert.equal(collections, 2);
});

Deno.test("heap housekeeping does nothing without V8's gc()", () => {
  let now = 0;
  const h = new HeapHousekeeping(undefined, () => now, 10);
  now = 1_000;
  assert.equal(h.collectIfDue(), false);
});

Deno.test("the agent's V8 flags expose gc(), and a process started with them gets it", async () => {
  const flags = await agentPermissionFlags();
  const v8 = flags.find((f) => f.startsWith("--v8-flags="));
  assert.ok(v8 !== undefined && v8.split("=")[1]!.split(",").includes("--expose-gc"), String(v8));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", v8!, "console.log(typeof globalThis.gc)"],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "function");
  assert.equal(typeof exposedGc(), typeof (globalThis as { gc?: unknown }).gc);
});
