import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { createHash } from "node:crypto";
import { parseRetryAfter } from "../src/platform/backoff.ts";
import {
  type HeartbeatBody,
  HeartbeatDigestRequestSchema,
  HeartbeatRequestSchema,
  type HeartbeatResponse,
} from "../src/wire/contract.ts";
import { CredentialRejectedError, ExitCode, PlatformError } from "../src/errors.ts";
import { heartbeatLoop, type LoopEnd, SEQUENCE_RESERVATION_BLOCK } from "../src/heartbeat/loop.ts";
import { HeartbeatSchedule } from "../src/heartbeat/schedule.ts";
import { createLogger, type LogLevel } from "../src/log.ts";
import { type AgentStatus, emptyStatus } from "../src/state/status_store.ts";
import type { Host, Metrics } from "../src/wire/telemetry_wire.ts";
import { seededRandom } from "../tasks/bench/fleet.ts";
import { TEST_HOST } from "./_support/host_fixture.ts";

const START = Date.parse("2026-11-29T12:00:00Z");
const HOST: Host = TEST_HOST;
const METRICS: Metrics = { uptime_seconds: 100, load_average: [0.1, 0.2, 0.3], memory: null };

type Reply = HeartbeatResponse | PlatformError;
interface Sent {
  body: HeartbeatBody;
  mono: number;
  wall: number;
  timersPending: number;
}

interface HarnessOptions {
  /** Answer for the n-th request (1-based); past the end, 200 `{}`. */
  replies?: Array<Reply | ((signal: AbortSignal) => Promise<Reply>)>;
  intervalSeconds?: number;
  enrollmentIntervalSeconds?: number;
  random?: () => number;
  once?: boolean;
  status?: AgentStatus;
  saveFails?: boolean;
  /** Host of the n-th snapshot (1-based); default always `HOST`. */
  host?: (n: number) => Host;
  /**
   * Hash `host_digest` with the agent's WebCrypto default. Off by default: fake time cannot drive
   * WebCrypto's asynchronous op, so beats after the first would never be sent.
   */
  realDigest?: boolean;
  /**
   * `features` the platform advertises in every 2xx answer (unless the reply has its own) and
   * the status starts with; default `["host_digest"]` (a v1.3 platform); null: a v1.0 platform.
   */
  features?: string[] | null;
}

function harness(options: HarnessOptions = {}) {
  const clock = FakeTimers.createClock(START);
  const sent: Sent[] = [];
  const events: string[] = [];
  const logs: Array<{ level: LogLevel; msg: string }> = [];
  const logger = createLogger({
    level: "debug",
    format: "json",
    write: (line) => {
      const { level, msg } = JSON.parse(line);
      logs.push({ level, msg });
    },
  });
  const shutdown = new AbortController();
  const saves: AgentStatus[] = [];
  let snapshots = 0;
  const digested: string[] = [];
  const features = options.features === undefined ? ["host_digest"] : options.features;
  const status = {
    current: options.status ??
      (features === null
        ? emptyStatus("agent-1")
        : { ...emptyStatus("agent-1"), platform_features: features }),
    save(): Promise<void> {
      events.push("save");
      if (options.saveFails) return Promise.reject(new Error("No space left on device"));
      saves.push(structuredClone(status.current));
      return Promise.resolve();
    },
  };
  const schedule = new HeartbeatSchedule({
    intervalSeconds: options.intervalSeconds,
    enrollmentIntervalSeconds: options.enrollmentIntervalSeconds,
    random: options.random ?? (() => 0.5),
  });
  const loop = (): Promise<LoopEnd> =>
    heartbeatLoop({
      agentId: "agent-1",
      agentVersion: "0.0.0-test",
      send: async (body, signal) => {
        events.push(`send ${body.sequence}`);
        sent.push({
          body: structuredClone(body),
          mono: clock.performance.now(),
          wall: clock.Date.now(),
          timersPending: clock.countTimers(),
        });
        const reply = options.replies?.[sent.length - 1] ?? {};
        const answer = typeof reply === "function" ? await reply(signal) : reply;
        if (answer instanceof PlatformError) throw answer;
        return features === null || "features" in answer ? answer : { ...answer, features };
      },
      snapshot: () => {
        snapshots++;
        return { host: options.host?.(snapshots) ?? HOST, metrics: METRICS };
      },
      status,
      schedule,
      monotonicMs: () => clock.performance.now(),
      wallMs: () => clock.Date.now(),
      timers: {
        setTimeout: (callback, ms) => clock.setTimeout(callback, ms),
        clearTimeout: (id) => clock.clearTimeout(id as number),
      },
      logger,
      shutdown: shutdown.signal,
      once: options.once,
      digest: options.realDigest ? undefined : (text) => {
        digested.push(text);
        return Promise.resolve(createHash("sha256").update(text).digest("hex"));
      },
    });
  // The outcome is captured as the loop starts: a loop that rejects while the test ticks the clock
  // fails that test where it awaits the end, with its own message, not the whole file as an
  // unhandled rejection.
  const run = (): Promise<LoopEnd> => {
    const done = loop();
    done.catch(() => {});
    return done;
  };
  const gaps = () => sent.slice(1).map((s, i) => s.mono - sent[i]!.mono);
  return {
    clock,
    sent,
    events,
    logs,
    saves,
    status,
    schedule,
    shutdown,
    run,
    gaps,
    snapshots: () => snapshots,
    digested,
  };
}

/** A failed answer as PlatformClient reports it; with a `code`, a problem document by default. */
function httpError(
  status: number,
  extra: {
    code?: string;
    retryAfterSeconds?: number;
    problem?: Record<string, unknown>;
    contentType?: string;
  } = {},
): PlatformError {
  return new PlatformError(`platform answered ${status}${extra.code ? ` ${extra.code}` : ""}`, {
    kind: "http",
    httpStatus: status,
    contentType: extra.code ? "application/problem+json" : undefined,
    ...extra,
  });
}

const networkError = () =>
  new PlatformError('cannot connect to "127.0.0.1:1": connection refused', { kind: "network" });

Deno.test("heartbeat loop sends first at once, then every interval ±10 %, one timer at a time", async () => {
  const h = harness({ random: seededRandom(7), intervalSeconds: 60 });
  const done = h.run();
  await h.clock.tickAsync(100 * 66_000);
  h.shutdown.abort(new Error("received SIGTERM"));
  assert.equal(await done, "shutdown");
  assert.equal(h.sent[0]!.mono, 0);
  assert.ok(h.sent.length >= 100, String(h.sent.length));
  for (const gap of h.gaps()) assert.ok(gap >= 54_000 && gap <= 66_000, String(gap));
  for (const s of h.sent) assert.equal(s.timersPending, 0);
  assert.equal(h.clock.countTimers(), 0);
  const sequences = h.sent.map((s) => s.body.sequence);
  assert.deepEqual(sequences, sequences.map((_, i) => i + 1));
  const body = h.sent[0]!.body;
  assert.equal(body.agent_id, "agent-1");
  assert.equal(body.sent_at, new Date(START).toISOString());
  assert.deepEqual(body.host, HOST);
  assert.deepEqual(body.metrics, METRICS);
});

Deno.test("heartbeat loop: wall-clock jumps neither stall nor burst it", async () => {
  const h = harness({ intervalSeconds: 60 });
  const done = h.run();
  await h.clock.tickAsync(120_000);
  assert.equal(h.sent.length, 3);
  h.clock.setSystemTime(START - 86400_000); // one day back
  await h.clock.tickAsync(60_000);
  assert.equal(h.sent.length, 4, "a backward jump must not stall the loop");
  h.clock.setSystemTime(START + 30 * 86400_000); // a month forward
  await h.clock.tickAsync(59_000);
  assert.equal(h.sent.length, 4, "a forward jump must not cause a burst");
  await h.clock.tickAsync(1_000);
  assert.equal(h.sent.length, 5);
  h.shutdown.abort();
  await done;
  assert.deepEqual(h.gaps(), [60_000, 60_000, 60_000, 60_000]);
  // sent_at follows the wall clock, jumps included.
  assert.equal(h.sent[3]!.body.sent_at, new Date(START - 86400_000 + 60_000).toISOString());
  assert.equal(h.sent[4]!.body.sent_at, new Date(START + 30 * 86400_000 + 60_000).toISOString());
});

Deno.test("heartbeat loop backs off on failures, honours Retry-After and resets on success", async () => {
  const failures: Reply[] = [
    networkError(),
    httpError(500),
    new PlatformError("request timed out after 15 s", { kind: "timeout" }),
    httpError(429, { retryAfterSeconds: 20 }),
    httpError(400),
    httpError(413),
    new PlatformError("invalid response", { kind: "invalid_response" }),
    new PlatformError("response too large", { kind: "response_too_large" }),
    new PlatformError("redirect", { kind: "redirect", httpStatus: 302 }),
    new PlatformError("TLS handshake failed", { kind: "tls" }),
    httpError(503, { retryAfterSeconds: 2 }),
  ];
  const h = harness({ random: () => 0.999, intervalSeconds: 60, replies: [...failures, {}] });
  const done = h.run();
  await h.clock.tickAsync(3_000_000);
  h.shutdown.abort();
  await done;
  const gaps = h.gaps().map((g) => Math.round(g / 1000));
  // 1,2,4 then the 429's Retry-After 20 (+ up to one interval) over 8, then 16,32,64,128,256,300,
  // then the 503's floor of 2 s is below the 300 s backoff; then the success interval ~66 s.
  assert.deepEqual(gaps.slice(0, 12), [1, 2, 4, 86, 16, 32, 64, 128, 256, 300, 300, 66]);
  assert.equal(h.saves.at(-1)!.consecutive_failures, 0);
  assert.equal(h.saves.at(-1)!.last_error, null);
  assert.equal(h.snapshots(), h.sent.length, "one fresh snapshot per attempt, nothing replayed");
  const failing = h.saves[h.saves.findIndex((s) => s.consecutive_failures === 11)]!;
  assert.equal(failing.last_error?.kind, "http");
  assert.equal(failing.last_error?.http_status, 503);
  assert.equal(failing.failing_since, new Date(START).toISOString());
  assert.ok(failing.next_attempt_at !== null);
});

Deno.test("heartbeat loop: a 503 with Retry-After 2 delays the next attempt by at least 2 s", async () => {
  const h = harness({ random: () => 0, replies: [httpError(503, { retryAfterSeconds: 2 }), {}] });
  const done = h.run();
  await h.clock.tickAsync(1_999);
  assert.equal(h.sent.length, 1);
  await h.clock.tickAsync(1);
  assert.equal(h.sent.length, 2);
  h.shutdown.abort();
  await done;
});

for (const status of [401, 403, 404, 410]) {
  Deno.test(`heartbeat loop stops at once on ${status} with re-enroll guidance`, async () => {
    const h = harness({ replies: [{}, httpError(status, { code: "credential_revoked" })] });
    const done = h.run();
    const outcome = done.then(() => "returned", (e) => e);
    await h.clock.tickAsync(10 * 60_000);
    const error = await outcome;
    assert.ok(error instanceof CredentialRejectedError, String(error));
    assert.equal(error.exitCode, ExitCode.credentialRejected);
    assert.match(error.message, /^Cannot send heartbeat: platform answered \d{3}/);
    assert.match(error.message, /re-enroll/);
    assert.equal(h.sent.length, 2, "never retried");
    assert.equal(h.clock.countTimers(), 0);
    const last = h.saves.at(-1)!;
    assert.equal(last.stopped?.reason, "credential_rejected");
    assert.equal(last.last_error?.http_status, status);
    assert.equal(last.next_attempt_at, null);
  });
}

Deno.test("heartbeat loop jumps the sequence after a 409 sequence_conflict and retries once at once", async () => {
  const conflict = (last: number) =>
    httpError(409, { code: "sequence_conflict", problem: { last_sequence: last } });
  const h = harness({
    random: () => 0.5,
    replies: [conflict(500), {}, conflict(900), conflict(950)],
  });
  const done = h.run();
  await h.clock.tickAsync(60_000);
  assert.deepEqual(h.sent.map((s) => s.body.sequence), [1, 501, 502, 901]);
  assert.equal(h.sent[1]!.mono, 0, "retried without waiting");
  assert.equal(h.saves.findLast((s) => s.sequence === 501)!.consecutive_failures, 0);
  // A second conflict in a row is a failure: counted and backed off.
  const afterSecond = h.saves.findLast((s) => s.sequence === 901)!;
  assert.equal(afterSecond.consecutive_failures, 1);
  assert.equal(afterSecond.last_error?.code, "sequence_conflict");
  await h.clock.tickAsync(2_000);
  assert.equal(h.sent[4]!.body.sequence, 951);
  h.shutdown.abort();
  await done;
});

Deno.test("heartbeat sequence is reserved before sending and never reused after a restart", async () => {
  const h = harness({ intervalSeconds: 60 });
  const done = h.run();
  await h.clock.tickAsync(4 * 60_000);
  h.shutdown.abort();
  await done;
  assert.deepEqual(h.events.slice(0, 2), ["save", "send 1"]);
  assert.equal(h.saves[0]!.sequence_reserved, SEQUENCE_RESERVATION_BLOCK);
  // One reservation write for the whole block, not one per beat (the last save is the stop).
  assert.deepEqual(
    new Set(h.saves.slice(0, -1).map((s) => s.sequence_reserved)),
    new Set([SEQUENCE_RESERVATION_BLOCK]),
  );
  assert.equal(h.events.filter((e) => e === "save").length, 1 + 5 + 1);
  assert.equal(h.status.current.sequence, 5);

  // An orderly stop hands the unused reservation back: a restart continues right after.
  assert.equal(h.status.current.sequence_reserved, 5);
  const again = harness({ status: structuredClone(h.status.current) });
  const done2 = again.run();
  await again.clock.tickAsync(0);
  again.shutdown.abort();
  await done2;
  assert.equal(again.sent[0]!.body.sequence, 6);
  assert.equal(again.saves[0]!.sequence_reserved, 5 + SEQUENCE_RESERVATION_BLOCK);

  // A crash (kill -9) leaves the reservation above what status says was sent: start past it.
  const crashed = harness({
    status: { ...emptyStatus("agent-1"), sequence: 7, sequence_reserved: 100 },
  });
  const done3 = crashed.run();
  await crashed.clock.tickAsync(0);
  crashed.shutdown.abort();
  await done3;
  assert.equal(crashed.sent[0]!.body.sequence, 101);
  const odd = harness({
    status: { ...emptyStatus("agent-1"), sequence: 250, sequence_reserved: 240 },
  });
  const done4 = odd.run();
  await odd.clock.tickAsync(0);
  odd.shutdown.abort();
  await done4;
  assert.equal(odd.sent[0]!.body.sequence, 251);
});

Deno.test("heartbeat loop: SIGTERM aborts the request in flight and persists status", async () => {
  let aborted = false;
  const hang = (signal: AbortSignal) =>
    new Promise<Reply>((resolve) => {
      signal.addEventListener("abort", () => {
        aborted = true;
        resolve(new PlatformError("request aborted", { kind: "aborted" }));
      });
    });
  const h = harness({ replies: [{}, hang] });
  const done = h.run();
  await h.clock.tickAsync(60_000);
  assert.equal(h.sent.length, 2);
  h.shutdown.abort(new Error("received SIGTERM"));
  assert.equal(await done, "shutdown");
  assert.ok(aborted);
  const last = h.saves.at(-1)!;
  assert.equal(last.sequence, 2);
  assert.equal(last.stopped?.reason, "shutdown");
  assert.equal(last.stopped?.message, "received SIGTERM");
  assert.equal(last.next_attempt_at, null);
  assert.equal(last.consecutive_failures, 0, "an aborted request is not a failure");
  assert.equal(h.clock.countTimers(), 0);
});

Deno.test("heartbeat loop: SIGTERM during the wait returns without waiting it out", async () => {
  const h = harness({});
  const done = h.run();
  await h.clock.tickAsync(0);
  assert.equal(h.clock.countTimers(), 1);
  h.shutdown.abort();
  // No tick: the wait must end by itself.
  assert.equal(await done, "shutdown");
  assert.equal(h.sent.length, 1);
  assert.equal(h.clock.countTimers(), 0);
});

Deno.test("heartbeat loop --once: 0 on success, PlatformError on failure, rejection on 401", async () => {
  const ok = harness({ once: true });
  const okEnd = ok.run();
  await ok.clock.tickAsync(0);
  assert.equal(await okEnd, "once");
  assert.equal(ok.sent.length, 1);
  assert.equal(ok.saves.at(-1)!.next_attempt_at, null);
  assert.equal(ok.clock.countTimers(), 0);

  const failing = harness({ once: true, replies: [httpError(503, { retryAfterSeconds: 2 })] });
  const failEnd = failing.run().then(() => null, (e) => e);
  await failing.clock.tickAsync(0);
  const error = await failEnd;
  assert.ok(error instanceof PlatformError);
  assert.equal(error.exitCode, ExitCode.unreachable);
  assert.equal(error.message, "Cannot send heartbeat: platform answered 503");
  assert.equal(failing.sent.length, 1);
  assert.equal(failing.saves.at(-1)!.consecutive_failures, 1);

  const rejected = harness({
    once: true,
    replies: [httpError(401, { code: "credential_invalid" })],
  });
  const rejEnd = rejected.run().then(() => null, (e) => e);
  await rejected.clock.tickAsync(0);
  assert.ok((await rejEnd) instanceof CredentialRejectedError);

  const conflict = harness({
    once: true,
    replies: [httpError(409, { code: "sequence_conflict", problem: { last_sequence: 41 } })],
  });
  const conflictEnd = conflict.run();
  await conflict.clock.tickAsync(0);
  assert.equal(await conflictEnd, "once");
  assert.deepEqual(conflict.sent.map((s) => s.body.sequence), [1, 42]);
});

Deno.test("heartbeat loop logs state changes at info/warn and each beat at debug only", async () => {
  const replies: Reply[] = [
    {},
    {},
    {},
    networkError(),
    networkError(),
    networkError(),
    {},
    {
      next_heartbeat_seconds: 0,
    },
    { next_heartbeat_seconds: "60" },
    { next_heartbeat_seconds: 30 },
    {},
  ];
  const h = harness({ random: () => 0.5, replies });
  const done = h.run();
  await h.clock.tickAsync(20 * 60_000);
  h.shutdown.abort();
  await done;
  const notDebug = h.logs.filter((l) => l.level !== "debug").map((l) => `${l.level} ${l.msg}`);
  assert.deepEqual(notDebug.map((l) => l.replace(/ since \S+:.*/, " since")), [
    "info First heartbeat accepted",
    "warn Heartbeats failing since",
    "info Heartbeats recovered after 3 failed attempts",
    "warn Ignoring invalid next_heartbeat_seconds 0 from the platform (expected an integer from 10 to 86400)",
    "info Heartbeat interval is now 30 s",
    "info Stopped",
  ]);
  assert.ok(h.logs.filter((l) => l.level === "debug").length >= h.sent.length);
  // The bad hints were ignored: 60 s, then the platform's 30 s.
  const gaps = h.gaps().map((g) => g / 1000);
  assert.deepEqual(gaps.slice(7, 10), [60, 60, 30]);
});

Deno.test("heartbeat loop keeps sending when the status file cannot be written", async () => {
  const h = harness({ saveFails: true });
  const done = h.run();
  await h.clock.tickAsync(3 * 60_000);
  h.shutdown.abort();
  await done;
  assert.equal(h.sent.length, 4);
  assert.equal(h.logs.filter((l) => l.msg.startsWith("Cannot write status file")).length, 1);
});

/** SHA-256 of the host's JSON text, computed independently of src/heartbeat/host_delta.ts. */
const digestOf = (host: Host) => createHash("sha256").update(JSON.stringify(host)).digest("hex");
/** Which beats carried the full `host`. */
const carriedHost = (sent: Sent[]) => sent.map((s) => "host" in s.body);

Deno.test("heartbeat loop sends host on the first beat, then only host_digest", async () => {
  const h = harness({ intervalSeconds: 60 });
  const done = h.run();
  await h.clock.tickAsync(3 * 60_000);
  h.shutdown.abort();
  await done;
  assert.equal(h.sent.length, 4);
  assert.deepEqual(carriedHost(h.sent), [true, false, false, false]);
  assert.deepEqual(h.sent[0]!.body.host, HOST);
  for (const { body } of h.sent) {
    assert.equal(body.host_digest, digestOf(HOST));
    assert.deepEqual(body.metrics, METRICS);
    const schema = "host" in body ? HeartbeatRequestSchema : HeartbeatDigestRequestSchema;
    assert.ok(schema.safeParse(body).success, JSON.stringify(body));
  }
  const bytes = h.sent.map((s) => JSON.stringify(s.body).length);
  assert.ok(bytes[1]! < bytes[0]! - JSON.stringify(HOST).length + 10, String(bytes));
  assert.deepEqual(h.digested, [JSON.stringify(HOST)], "hashed once: the host never changed");
});

Deno.test("heartbeat host_digest is the SHA-256 of JSON.stringify(host), UTF-8 included", async () => {
  const host: Host = {
    ...HOST,
    hostname: "hôte-ünïcode-主机",
    network_interfaces: [
      {
        name: "eth0",
        family: "IPv6",
        address: "fe80::1",
        mac: "0a:1b:2c:3d:4e:5f",
        internal: true,
      },
    ],
  };
  const h = harness({ once: true, host: () => host, realDigest: true });
  assert.equal(await h.run(), "once");
  const body = h.sent[0]!.body;
  assert.equal(body.host_digest, digestOf(host));
  assert.match(body.host_digest, /^[0-9a-f]{64}$/);
  // The digest covers exactly the text of `host` inside the body as sent.
  assert.ok(JSON.stringify(body).includes(`"host":${JSON.stringify(host)}`));
});

Deno.test("heartbeat loop sends host again, with its new digest, when the host changes", async () => {
  const moved: Host = { ...HOST, hostname: "renamed-host" };
  const h = harness({ intervalSeconds: 60, host: (n) => n <= 2 ? HOST : n === 4 ? moved : HOST });
  const done = h.run();
  await h.clock.tickAsync(5 * 60_000);
  h.shutdown.abort();
  await done;
  assert.equal(h.sent.length, 6);
  // 3: unchanged; 4: renamed; 5: back to the acknowledged-before-last host: changed again.
  assert.deepEqual(carriedHost(h.sent), [true, false, false, true, true, false]);
  assert.deepEqual(h.sent[3]!.body.host, moved);
  assert.equal(h.sent[3]!.body.host_digest, digestOf(moved));
  assert.deepEqual(h.sent[4]!.body.host, HOST);
  assert.deepEqual(
    h.sent.map((s) => s.body.host_digest),
    [HOST, HOST, HOST, moved, HOST, HOST].map(digestOf),
  );
  // Hashed only when the host text changed, not on every beat.
  assert.deepEqual(h.digested, [HOST, moved, HOST].map((x) => JSON.stringify(x)));
});

Deno.test("heartbeat loop sends host on the next regular beat after host_required", async () => {
  const h = harness({
    intervalSeconds: 60,
    replies: [{}, { host_required: true, next_heartbeat_seconds: 60 }, {}, {}],
  });
  const done = h.run();
  await h.clock.tickAsync(3 * 60_000);
  h.shutdown.abort();
  await done;
  assert.deepEqual(carriedHost(h.sent), [true, false, true, false]);
  assert.deepEqual(h.sent[2]!.body.host, HOST);
  assert.deepEqual(h.gaps(), [60_000, 60_000, 60_000], "no extra request for host_required");
});

Deno.test("heartbeat loop: a failed beat that carried host is followed by one that carries it", async () => {
  const moved: Host = { ...HOST, cpu_count: 4 };
  const h = harness({
    random: () => 0.5,
    intervalSeconds: 60,
    host: (n) => n <= 4 ? HOST : moved,
    // 1 fails with host; 2 carries it again; 3 fails without host; 4 still none; 5 (changed
    // host) times out; 6 carries the new host again; 7 none.
    replies: [
      httpError(503),
      {},
      networkError(),
      {},
      new PlatformError("request timed out after 15 s", { kind: "timeout" }),
      {},
      {},
    ],
  });
  const done = h.run();
  await h.clock.tickAsync(10 * 60_000);
  h.shutdown.abort();
  await done;
  assert.deepEqual(carriedHost(h.sent).slice(0, 7), [true, true, false, false, true, true, false]);
  assert.deepEqual(h.sent[5]!.body.host, moved);
});

Deno.test("heartbeat loop sends host on the first beat of every process", async () => {
  const h = harness({ once: true, realDigest: true });
  assert.equal(await h.run(), "once");
  assert.equal(await h.run(), "once");
  assert.deepEqual(carriedHost(h.sent), [true, true]);
});

for (
  const [what, reply] of [
    [
      "an edge's HTML 403",
      new PlatformError(
        'platform answered 403 with "text/html", not JSON (page title "403 Forbidden")',
        { kind: "http", httpStatus: 403, contentType: "text/html" },
      ),
    ],
    [
      "a plain-JSON 401",
      httpError(401, { code: "credential_revoked", contentType: "application/json" }),
    ],
    ["a problem 404 with an unknown code", httpError(404, { code: "route_not_found" })],
    ["a 410 without a body", httpError(410)],
  ] as const
) {
  Deno.test(`heartbeat loop keeps running on ${what}: no platform rejection`, async () => {
    const h = harness({ intervalSeconds: 60, replies: [{}, reply, reply, {}] });
    const done = h.run();
    await h.clock.tickAsync(15 * 60_000);
    h.shutdown.abort();
    assert.equal(await done, "shutdown");
    assert.ok(h.sent.length >= 5, `kept sending: ${h.sent.length}`);
    const warnings = h.logs.filter((l) => l.level === "warn");
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!.msg, /platform answered 4\d\d/);
    assert.match(warnings[0]!.msg, /not a platform rejection: retrying/);
    assert.match(
      warnings[0]!.msg,
      /"text\/html"|"application\/json"|problem\+json|no content type/,
    );
    assert.ok(h.logs.some((l) => l.msg.startsWith("Heartbeats recovered after 2 failed")));
    assert.equal(h.saves.at(-1)!.stopped?.reason, "shutdown");
  });
}

Deno.test("heartbeat loop sends host on every beat to a platform without host_digest", async () => {
  const h = harness({ intervalSeconds: 60, features: null });
  const done = h.run();
  await h.clock.tickAsync(3 * 60_000);
  h.shutdown.abort();
  await done;
  assert.equal(h.sent.length, 4);
  assert.deepEqual(carriedHost(h.sent), [true, true, true, true]);
  for (const { body } of h.sent) assert.ok(HeartbeatRequestSchema.safeParse(body).success);
  assert.deepEqual(h.saves.at(-1)!.platform_features, []);
});

Deno.test("heartbeat loop uses host_digest once an answer advertises it, and remembers it", async () => {
  const h = harness({
    intervalSeconds: 60,
    features: null,
    replies: [{ features: ["some_future_thing", "host_digest"] }, { features: ["host_digest"] }],
  });
  const done = h.run();
  await h.clock.tickAsync(3 * 60_000);
  h.shutdown.abort();
  await done;
  // Answer 3 carries no `features`: advertising nothing, the platform gets `host` again.
  assert.deepEqual(carriedHost(h.sent), [true, false, false, true]);
  assert.ok(
    h.saves.some((s) =>
      JSON.stringify(s.platform_features) === '["some_future_thing","host_digest"]'
    ),
  );
  assert.deepEqual(h.saves.at(-1)!.platform_features, []);
  assert.ok(h.logs.some((l) => l.msg.startsWith("Platform supports digest-only heartbeats")));
});

Deno.test("heartbeat loop resends a refused digest-only beat with host at once, and stops the delta", async () => {
  const refusal = httpError(400, { code: "invalid_request" });
  const h = harness({ intervalSeconds: 60, replies: [{}, refusal, {}, {}, {}] });
  const done = h.run();
  await h.clock.tickAsync(4 * 60_000);
  h.shutdown.abort();
  await done;
  assert.deepEqual(carriedHost(h.sent), [true, false, true, true, true, true]);
  assert.deepEqual(h.sent.map((s) => s.body.sequence), [1, 2, 3, 4, 5, 6]);
  assert.equal(h.sent[2]!.mono, h.sent[1]!.mono, "resent without waiting");
  const warnings = h.logs.filter((l) => l.level === "warn");
  assert.equal(warnings.length, 1, JSON.stringify(warnings));
  assert.match(
    warnings[0]!.msg,
    /^Platform refused a heartbeat without host \(platform answered 400 invalid_request\)/,
  );
  assert.ok(h.saves.every((s) => s.consecutive_failures === 0), "the refusal is no failure");
  assert.ok(h.saves.every((s) => s.sequence <= s.sequence_reserved || s.stopped !== null));
});

Deno.test("heartbeat loop never loops on the same 400: a refused full beat backs off", async () => {
  const refusal = () => httpError(422, { code: "invalid_request" });
  const h = harness({
    intervalSeconds: 60,
    replies: [{}, refusal(), refusal(), refusal(), refusal(), refusal()],
  });
  const done = h.run();
  await h.clock.tickAsync(60_000 + 1);
  const early = h.sent.length;
  await h.clock.tickAsync(10 * 60_000);
  h.shutdown.abort();
  await done;
  // Beat 2 (digest-only) refused -> beat 3 at once with host, refused -> backoff, not a resend.
  assert.equal(early, 3, String(early));
  assert.deepEqual(carriedHost(h.sent).slice(0, 3), [true, false, true]);
  assert.ok(h.sent[3]!.mono > h.sent[2]!.mono, "the full beat's refusal is backed off");
  for (let i = 3; i < 6; i++) assert.ok(h.sent[i]!.mono > h.sent[i - 1]!.mono, `beat ${i + 1}`);
  assert.ok(carriedHost(h.sent).slice(2).every((c) => c));
  assert.equal(
    h.logs.filter((l) => l.msg.startsWith("Platform refused a heartbeat without host")).length,
    1,
  );
});

Deno.test("heartbeat loop caps Retry-After 99999 at 3600 s plus 10 % even with a one-day interval", async () => {
  const retryAfter = parseRetryAfter("99999", START);
  assert.equal(retryAfter, 3600);
  for (const raw of [retryAfter, 99999]) {
    const h = harness({
      random: () => 0.999,
      enrollmentIntervalSeconds: 86400,
      replies: [httpError(503, { retryAfterSeconds: raw }), {}],
    });
    const done = h.run();
    await h.clock.tickAsync(10);
    // status.json says when the next attempt is, written before the loop sleeps.
    const waiting = h.saves.at(-1)!;
    assert.equal(waiting.consecutive_failures, 1);
    const waitMs = Date.parse(waiting.next_attempt_at!) - START;
    assert.ok(waitMs >= 3600_000 && waitMs <= 3960_000, `waits ${waitMs} ms`);
    await h.clock.tickAsync(3960_000);
    assert.equal(h.sent.length, 2, "the second attempt came within 3960 s");
    h.shutdown.abort();
    await done;
  }
});

const GAP_FEATURES = ["host_digest", "gap"];

Deno.test("heartbeat loop reports the outage as gap on the first accepted beat, counting failed gap beats", async () => {
  const replies: Reply[] = [
    {},
    networkError(),
    networkError(),
    httpError(503, { code: "unavailable" }),
    {},
    {},
  ];
  const h = harness({ intervalSeconds: 60, features: GAP_FEATURES, replies });
  const done = h.run();
  await h.clock.tickAsync(15 * 60_000);
  h.shutdown.abort();
  await done;
  assert.ok(h.sent.length >= 6);
  const gaps = h.sent.map((s) => s.body.gap);
  const since = h.sent[1]!.body.sent_at;
  assert.deepEqual(gaps.slice(0, 6), [
    undefined,
    undefined,
    { since, attempts: 1, last_error: { kind: "network", status: null, code: null } },
    { since, attempts: 2, last_error: { kind: "network", status: null, code: null } },
    { since, attempts: 3, last_error: { kind: "http", status: 503, code: "unavailable" } },
    undefined,
  ]);
  for (const { body } of h.sent) {
    const schema = body.host === undefined ? HeartbeatDigestRequestSchema : HeartbeatRequestSchema;
    assert.ok(schema.safeParse(body).success, JSON.stringify(body));
  }
  assert.equal(h.saves.at(-1)!.consecutive_failures, 0);
});

for (
  const [what, features] of [
    ["a v1.3 platform that did not advertise gap", ["host_digest"]],
    ["a v1.0 platform", null],
  ] as const
) {
  Deno.test(`heartbeat loop never sends gap to ${what}`, async () => {
    const replies: Reply[] = [{}, networkError(), httpError(503), {}, {}];
    const h = harness({ intervalSeconds: 60, features: features && [...features], replies });
    const done = h.run();
    await h.clock.tickAsync(10 * 60_000);
    h.shutdown.abort();
    await done;
    assert.ok(h.sent.length >= 5);
    assert.ok(h.sent.every((s) => !("gap" in s.body)), "a gap went on the wire");
    assert.ok(h.logs.some((l) => l.msg.startsWith("Heartbeats recovered after 2 failed")));
  });
}

Deno.test("heartbeat loop reports a gap a previous process recorded in status (restart)", async () => {
  const status: AgentStatus = {
    ...emptyStatus("agent-1"),
    platform_features: GAP_FEATURES,
    sequence: 40,
    sequence_reserved: 99,
    consecutive_failures: 17,
    failing_since: "2026-11-29T09:00:00.000Z",
    last_error: {
      kind: "tls",
      http_status: null,
      code: null,
      message: 'TLS handshake with "platform.example" failed: certificate expired',
    },
  };
  const h = harness({ intervalSeconds: 60, status, replies: [{}, {}] });
  const done = h.run();
  await h.clock.tickAsync(90_000);
  h.shutdown.abort();
  await done;
  assert.deepEqual(h.sent[0]!.body.gap, {
    since: "2026-11-29T09:00:00.000Z",
    attempts: 17,
    last_error: { kind: "tls", status: null, code: null },
  });
  assert.equal(h.sent[0]!.body.sequence, 100, "after the reserved block, as after any restart");
  assert.doesNotMatch(JSON.stringify(h.sent[0]!.body), /handshake|expired/);
  assert.equal(h.sent[1]!.body.gap, undefined);
});

Deno.test("heartbeat loop passes on only plain problem codes in gap, never a message", async () => {
  const odd = new PlatformError("platform answered 502 Edge.Timeout:7: upstream 10.0.0.7 down", {
    kind: "http",
    httpStatus: 502,
    code: "Edge.Timeout:7",
    detail: "upstream 10.0.0.7 down",
    contentType: "application/problem+json",
  });
  const h = harness({ intervalSeconds: 60, features: GAP_FEATURES, replies: [odd, {}] });
  const done = h.run();
  await h.clock.tickAsync(5 * 60_000);
  h.shutdown.abort();
  await done;
  assert.deepEqual(h.sent[1]!.body.gap?.last_error, { kind: "http", status: 502, code: null });
  assert.doesNotMatch(JSON.stringify(h.sent[1]!.body), /10\.0\.0\.7|Edge|upstream/);
});

Deno.test("heartbeat loop sends the measured clock offset only to a platform that advertised it", async () => {
  const measured = { seconds: -612, measured_at: "2026-01-01T00:00:00.000Z" };
  for (
    const [features, expected] of [[["host_digest", "clock_offset"], measured], [
      ["host_digest"],
      undefined,
    ]] as const
  ) {
    const h = harness({
      intervalSeconds: 60,
      features: [...features],
      status: {
        ...emptyStatus("agent-1"),
        platform_features: [...features],
        clock_offset: measured,
      },
    });
    const done = h.run();
    await h.clock.tickAsync(60_000);
    h.shutdown.abort();
    await done;
    assert.equal(h.sent.length, 2);
    for (const { body } of h.sent) {
      assert.deepEqual(body.clock_offset, expected);
      const schema = body.host === undefined
        ? HeartbeatDigestRequestSchema
        : HeartbeatRequestSchema;
      assert.ok(schema.safeParse(body).success, JSON.stringify(body));
    }
  }
});
