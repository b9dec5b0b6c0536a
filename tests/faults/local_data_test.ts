/**
 * Local data faults: identity.json and status.json truncated, empty, garbage or wrongly typed; a
 * key that does not match the certificate; an expired certificate; a sequence that went back.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exportPrivateKeyPem, generateAgentKeyPair } from "../../src/trust/certificates.ts";
import { StatusSchema } from "../../src/state/status_store.ts";
import { assertFails, delay, Harness } from "../_support/fault_helpers.ts";
import { enrollArgs } from "../_support/helpers.ts";

function increasing(values: number[]): void {
  for (let i = 1; i < values.length; i++) {
    assert.ok(values[i]! > values[i - 1]!, `not strictly increasing: ${values.join(",")}`);
  }
}

/** Runs `tasks` with at most `width` at a time (two cores, shared). */
async function inBatches<T>(tasks: Array<() => Promise<T>>, width = 3): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < tasks.length; i += width) {
    out.push(...await Promise.all(tasks.slice(i, i + width).map((t) => t())));
  }
  return out;
}

const CORRUPT = /; restore it from a backup, or re-enroll with --force to replace it$/;

Deno.test("corrupt identity.json: status, run and enroll exit 2 naming the file and field, never a value", async () => {
  await using h = await Harness.open();
  const identity = await h.enroll();
  const original = await Deno.readTextFile(h.identityPath);
  const sat = identity.service_account_token as string;
  const json = (change: Record<string, unknown>) => JSON.stringify({ ...identity, ...change });
  const garbage = new Uint8Array(512).map((_, i) => (i * 7919 + 13) % 256);
  const variants: Array<[string, string | Uint8Array, RegExp]> = [
    [
      "truncated",
      original.slice(0, Math.floor(original.length / 2)),
      /: not valid JSON \(truncated\?\)/,
    ],
    ["empty", "", /: file is empty/],
    ["whitespace", " \n\t\n", /: file is empty/],
    ["garbage bytes", garbage, /: not valid JSON/],
    ["JSON null", "null", /: "document" /],
    ["array", "[]", /: "document" /],
    ["version 2", json({ version: 2 }), /: "version" /],
    ["agent_id number", json({ agent_id: 42 }), /: "agent_id" /],
    ["agent_id holding the token", json({ agent_id: `${sat} !` }), /: "agent_id" /],
    ["token a number", json({ service_account_token: 123456789 }), /: "service_account_token" /],
    [
      "interval a string",
      json({ heartbeat_interval_seconds: "60" }),
      /: "heartbeat_interval_seconds" /,
    ],
    [
      "key is the certificate",
      json({ private_key: identity.certificate }),
      /: private_key is not a PKCS#8 ECDSA P-256 key/,
    ],
    [
      "certificate is the key",
      json({ certificate: identity.private_key }),
      /: certificate is not a PEM certificate/,
    ],
  ];
  const agents = h.platform.agents();
  await inBatches(variants.map(([name, content, why]) => async () => {
    const stateDir = join(h.root, name.replaceAll(" ", "-"));
    await Deno.mkdir(stateDir, { mode: 0o700 });
    const path = join(stateDir, "identity.json");
    if (typeof content === "string") await Deno.writeTextFile(path, content, { mode: 0o600 });
    else await Deno.writeFile(path, content, { mode: 0o600 });
    const before = await Deno.readFile(path);
    const commands = [["status"], ["run", "--once"]];
    // enroll (without --force) takes the same path; three shapes are enough to show it.
    if (["truncated", "agent_id holding the token", "key is the certificate"].includes(name)) {
      commands.push(["enroll", "--url", h.platform.url.href]);
    }
    for (const args of commands) {
      const result = await h.cli(args, { stateDir });
      const line = assertFails(result, 2, /^error: Corrupt identity file ".*\/identity\.json": /);
      assert.match(line, why, `${name}: ${line}`);
      assert.match(line, CORRUPT, `${name}: ${line}`);
    }
    assert.deepEqual(await Deno.readFile(path), before, `${name}: file changed`);
  }));
  assert.equal(h.platform.heartbeats().length, 0, "a heartbeat was sent");
  assert.deepEqual(h.platform.agents(), agents);

  // The way out the message names: enroll --force replaces the corrupt file.
  const stateDir = join(h.root, "truncated");
  const force = await h.cli(enrollArgs(h.platform, "--force", "--token-file", "-"), {
    stdin: h.token(),
    stateDir,
  });
  assert.equal(force.code, 0, force.stderr);
  h.secrets.addIdentity(JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json"))));
  const once = await h.cli(["run", "--once"], { stateDir });
  assert.equal(once.code, 0, once.stderr);
});

Deno.test("corrupt status.json: status warns and shows none, run rebuilds it and the sequence still rises", async () => {
  await using h = await Harness.open();
  const identity = await h.enroll();
  const agentId = identity.agent_id as string;
  const first = await h.cli(["run", "--once"]);
  assert.equal(first.code, 0, first.stderr);
  const good = await Deno.readTextFile(h.statusPath);
  const variants: Array<[string, string, RegExp]> = [
    ["truncated", good.slice(0, 40), /Ignoring corrupt status file \(not JSON\)/],
    ["empty", "", /Ignoring corrupt status file \(not JSON\)/],
    ["garbage", "\u0000\u0001garbage{{{", /Ignoring corrupt status file \(not JSON\)/],
    [
      "sequence a string",
      JSON.stringify({ ...JSON.parse(good), sequence: "5" }),
      /Ignoring invalid status file/,
    ],
    [
      "sequence negative",
      JSON.stringify({ ...JSON.parse(good), sequence: -1 }),
      /Ignoring invalid status file/,
    ],
    ["array", "[]", /Ignoring invalid status file/],
  ];
  for (const [name, content, warning] of variants) {
    await Deno.writeTextFile(h.statusPath, content, { mode: 0o600 });
    const status = await h.cli(["status"]);
    assert.equal(status.code, 0, `${name}: ${status.stderr}`);
    assert.match(status.stderr, warning, name);
    assert.match(status.stdout, /^Heartbeats: +none yet/m, name);

    const once = await h.cli(["run", "--once"]);
    assert.equal(once.code, 0, `${name}: ${once.stderr}`);
    assert.match(once.stderr, warning, name);
    const rebuilt = StatusSchema.parse(await h.status());
    const last = h.platform.heartbeats(agentId).at(-1)!;
    assert.equal(rebuilt.sequence, last.sequence, name);
    assert.equal(rebuilt.last_error, null, name);
  }
  increasing(h.platform.heartbeats(agentId).map((r) => r.sequence));
  assert.equal(h.platform.heartbeats(agentId).length, 1 + variants.length);
});

Deno.test("status.json whose sequence went backwards: run continues after the platform's last", async () => {
  await using h = await Harness.open();
  const identity = await h.enroll();
  const agentId = identity.agent_id as string;
  for (let i = 0; i < 3; i++) {
    const once = await h.cli(["run", "--once"]);
    assert.equal(once.code, 0, once.stderr);
  }
  const lastSeen = h.platform.heartbeats(agentId).at(-1)!.sequence;
  const status = await h.status();
  await Deno.writeTextFile(
    h.statusPath,
    JSON.stringify({ ...status, sequence: 1, sequence_reserved: 1 }),
    { mode: 0o600 },
  );
  const once = await h.cli(["run", "--once"]);
  assert.equal(once.code, 0, once.stderr);
  assert.match(
    once.stderr,
    new RegExp(`INFO +Platform has seen sequence ${lastSeen}; continuing from ${lastSeen + 1}`),
  );
  const sequences = h.platform.heartbeats(agentId).map((r) => r.sequence);
  increasing(sequences);
  assert.equal(sequences.at(-1), lastSeen + 1);
  const after = StatusSchema.parse(await h.status());
  assert.equal(after.sequence, lastSeen + 1);
  assert.ok(after.sequence_reserved >= after.sequence);
});

Deno.test("a private key that does not match the certificate: exit 2, nothing sent", async () => {
  await using h = await Harness.open();
  await h.enroll();
  const other = await exportPrivateKeyPem((await generateAgentKeyPair()).privateKey);
  h.secrets.addIdentity({ private_key: other });
  await h.editIdentity((identity) => identity.private_key = other);
  const mismatch =
    /^error: Corrupt identity file ".*\/identity\.json": private_key does not match the certificate; restore it/;
  assertFails(await h.cli(["status"]), 2, mismatch);
  assertFails(await h.cli(["run", "--once"]), 2, mismatch);
  assertFails(await h.cli(["run", "--once", "--auth", "mtls"]), 2, mismatch);
  assert.equal(h.platform.heartbeats().length, 0);
});

Deno.test("an expired certificate: status says EXPIRED, run warns and still beats with the bearer token", async () => {
  await using h = await Harness.open({ certTtlSeconds: 1 });
  const identity = await h.enroll();
  const agentId = identity.agent_id as string;
  const notAfter = Date.parse(identity.certificate_not_after as string);
  await delay(Math.max(0, notAfter - Date.now()) + 1100);

  const status = await h.cli(["status"]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^Certificate: +expires .* ago\) EXPIRED$/m);

  const once = await h.cli(["run", "--once"]);
  assert.equal(once.code, 0, once.stderr);
  assert.match(once.stderr, /WARN +Agent certificate expired at /);
  assert.equal(h.platform.heartbeats(agentId).length, 1);
});

Deno.test("enroll refuses a certificate that is already expired: nothing stored, exit 4", async () => {
  // The platform's clock is two days behind: the certificate it issues expired long ago.
  await using h = await Harness.open({
    certTtlSeconds: 60,
    now: () => Date.now() - 2 * 86_400_000,
  });
  const result = await h.cli(enrollArgs(h.platform, "--token-file", "-"), { stdin: h.token() });
  assertFails(
    result,
    4,
    /^error: Cannot enroll: refusing the platform's answer: certificate expired at .*clock skew\? check this host's clock\); the platform's clock is 48 h behind this host \(measured [^)]+\); nothing was stored; the enrollment token is probably used up, so ask for a new one once the cause is fixed \(the same answer would spend it too\)$/,
  );
  await assert.rejects(Deno.lstat(h.identityPath), Deno.errors.NotFound);
});
