import assert from "node:assert/strict";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import type { RenewRequest, RenewResponse } from "../src/wire/contract.ts";
import {
  CredentialRejectedError,
  NotEnrolledError,
  PlatformError,
  UsageError,
} from "../src/errors.ts";
import { type Identity, IdentityStore } from "../src/state/identity_store.ts";
import { keyMatchesCertificate } from "../src/trust/key_match.ts";
import { silentLogger } from "../src/log.ts";
import {
  type RenewalClient,
  renewalDueAt,
  RenewalScheduler,
  renewAndStore,
  renewIdentity,
} from "../src/enrollment/renewal.ts";
import { renewCommand } from "../src/commands/renew.ts";
import {
  type AgentStatus,
  emptyStatus,
  readStatus,
  statusPath,
} from "../src/state/status_store.ts";
import { createDevCa } from "../tasks/dev_platform/server.ts";
import { repoPath, skipWithout, tempDir } from "./_support/helpers.ts";
import { issueFor, makeIdentity } from "./_support/identity_fixture.ts";
import { testContext } from "./_support/context_fixture.ts";
import { opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ca = await createDevCa();
const otherCa = await createDevCa({ commonName: "Other CA" });

Deno.test("renewal is due two thirds into the certificate lifetime, ±10 %", () => {
  const notBefore = Date.parse("2026-01-01T00:00:00Z");
  const notAfter = notBefore + 90 * DAY;
  const life = notAfter - notBefore;
  assert.equal(renewalDueAt(notBefore, notAfter, () => 0.5), notBefore + life * 2 / 3);
  assert.equal(renewalDueAt(notBefore, notAfter, () => 0), notBefore + life * 2 / 3 * 0.9);
  assert.equal(renewalDueAt(notBefore, notAfter, () => 1), notBefore + life * 2 / 3 * 1.1);
  for (let i = 0; i <= 100; i++) {
    const at = renewalDueAt(notBefore, notAfter, () => i / 100);
    assert.ok(at >= notBefore + 0.6 * life - 1 && at <= notBefore + (2 / 3) * 1.1 * life + 1);
  }
});

Deno.test("renewal is due before less than 24 h (or a quarter of a short lifetime) remain", () => {
  const notBefore = Date.parse("2026-01-01T00:00:00Z");
  for (const lifetime of [120_000, HOUR, 30 * HOUR, 4 * DAY, 30 * DAY, 365 * DAY]) {
    for (const r of [0, 0.25, 0.5, 0.75, 1]) {
      const due = renewalDueAt(notBefore, notBefore + lifetime, () => r);
      const remaining = notBefore + lifetime - due;
      assert.ok(remaining >= Math.min(24 * HOUR, lifetime / 4), `${lifetime} ms, random ${r}`);
      assert.ok(due >= notBefore + lifetime / 2, `${lifetime} ms, random ${r}: too early`);
    }
  }
});

Deno.test("a short-lived certificate is renewed two thirds in, not the moment it is issued", () => {
  // The dev platform's 60 s TTL, backdated 60 s: a 120 s lifetime renews 72..88 s in.
  const notBefore = Date.parse("2026-01-01T00:00:00Z");
  const notAfter = notBefore + 120_000;
  assert.equal(renewalDueAt(notBefore, notAfter, () => 0), notBefore + 72_000);
  assert.equal(renewalDueAt(notBefore, notAfter, () => 0.5), notBefore + 80_000);
  assert.equal(renewalDueAt(notBefore, notAfter, () => 1), notBefore + 88_000);
  // An hour-long certificate: never later than a quarter of its life before expiry.
  assert.ok(renewalDueAt(notBefore, notBefore + HOUR, () => 1) <= notBefore + 0.75 * HOUR);
});

/** A fake client that counts `close()`. */
class FakeClient implements RenewalClient {
  closed = 0;
  constructor(readonly label: string) {}
  renewCertificate(): Promise<RenewResponse> {
    return Promise.reject(new Error("not used by the scheduler tests"));
  }
  close(): void {
    this.closed++;
  }
}

interface SchedulerHarness {
  scheduler: RenewalScheduler<FakeClient>;
  status: { current: AgentStatus; save(): Promise<void>; saves: number };
  saved: Identity[];
  clock: { now: number };
  first: FakeClient;
  created: FakeClient[];
  renewCalls: Identity[];
}

function harness(
  identity: Identity,
  opts: {
    now: number;
    renew?: (identity: Identity) => Promise<Identity>;
    saveFails?: boolean;
    random?: () => number;
    previous?: AgentStatus["renewal"];
  },
): SchedulerHarness {
  const clock = { now: opts.now };
  const saved: Identity[] = [];
  const created: FakeClient[] = [];
  const renewCalls: Identity[] = [];
  const current = emptyStatus(identity.agent_id);
  if (opts.previous !== undefined) current.renewal = opts.previous;
  const status = {
    current,
    saves: 0,
    save() {
      this.saves++;
      return Promise.resolve();
    },
  };
  const first = new FakeClient("first");
  const scheduler = new RenewalScheduler<FakeClient>({
    identity,
    client: first,
    createClient: (id) => {
      const c = new FakeClient(id.certificate_not_after);
      created.push(c);
      return c;
    },
    store: {
      save: (id) => {
        if (opts.saveFails) return Promise.reject(new Error("disk full"));
        saved.push(id);
        return Promise.resolve();
      },
    },
    status,
    logger: silentLogger,
    now: () => clock.now,
    random: opts.random ?? (() => 0.5),
    renew: (id) => {
      renewCalls.push(id);
      return opts.renew ? opts.renew(id) : Promise.reject(new Error("no renew scripted"));
    },
  });
  return { scheduler, status, saved, clock, first, created, renewCalls };
}

/** A fake identity whose certificate window is given (the scheduler never parses it). */
function identityFor(notBefore: number, notAfter: number, tag = "old"): Identity {
  return {
    version: 1,
    agent_id: "agent-1",
    platform_url: "https://127.0.0.1:1/",
    certificate: `cert-${tag}`,
    ca_certificates: ["ca"],
    bootstrap_ca_certificates: [],
    private_key: `key-${tag}`,
    service_account_token: `token-${tag}`,
    machine_id: null,
    enrolled_at: new Date(notBefore).toISOString(),
    heartbeat_interval_seconds: 60,
    certificate_not_before: new Date(notBefore).toISOString(),
    certificate_not_after: new Date(notAfter).toISOString(),
  };
}

const T0 = Date.parse("2026-01-01T00:00:00Z");

Deno.test("renewal scheduler does nothing before the renewal time and records it in status", async () => {
  const h = harness(identityFor(T0, T0 + 90 * DAY), { now: T0 + DAY });
  assert.equal(h.scheduler.nextAt(), T0 + 60 * DAY);
  assert.deepEqual(h.status.current.renewal, {
    next_at: new Date(T0 + 60 * DAY).toISOString(),
    last_error: null,
    last_renewed_at: null,
  });
  h.clock.now = T0 + 60 * DAY - 1;
  assert.equal(await h.scheduler.runIfDue(new AbortController().signal), null);
  assert.deepEqual(h.renewCalls, []);
  assert.equal(h.scheduler.client, h.first);
});

Deno.test("renewal scheduler renews when due, stores the identity and swaps the client", async () => {
  const old = identityFor(T0, T0 + 90 * DAY);
  const renewedId = identityFor(T0 + 60 * DAY, T0 + 150 * DAY, "new");
  const h = harness(old, {
    now: T0 + 60 * DAY,
    renew: () => Promise.resolve(renewedId),
    previous: {
      next_at: null,
      last_error: "Cannot renew certificate: old failure",
      last_renewed_at: null,
    },
  });
  assert.equal(h.status.current.renewal?.last_error, "Cannot renew certificate: old failure");
  const result = await h.scheduler.runIfDue(new AbortController().signal);
  assert.ok(result !== null);
  assert.equal(result.identity, renewedId);
  assert.deepEqual(h.renewCalls, [old]);
  assert.deepEqual(h.saved, [renewedId]);
  assert.equal(h.created.length, 1);
  assert.equal(result.client, h.created[0]);
  assert.equal(h.scheduler.client, h.created[0]);
  assert.equal(h.scheduler.identity, renewedId);
  assert.equal(h.first.closed, 1, "the old client is closed");
  assert.equal(h.created[0]!.closed, 0);
  // The next renewal is planned from the new certificate.
  assert.equal(h.scheduler.nextAt(), T0 + 120 * DAY);
  assert.deepEqual(h.status.current.renewal, {
    next_at: new Date(T0 + 120 * DAY).toISOString(),
    last_error: null,
    last_renewed_at: new Date(T0 + 60 * DAY).toISOString(),
  });
  assert.equal(h.status.current.certificate_expires_at, renewedId.certificate_not_after);
  assert.ok(h.status.saves >= 1);
  // Not due again right after.
  assert.equal(await h.scheduler.runIfDue(new AbortController().signal), null);
  assert.equal(h.renewCalls.length, 1);
});

Deno.test("renewal scheduler renews at once when less than 24 h remain", async () => {
  // An agent that was off for weeks: its 90-day certificate has 23 h left.
  const notAfter = T0 + 90 * DAY;
  const h = harness(identityFor(T0, notAfter), {
    now: notAfter - 23 * HOUR,
    random: () => 1,
    renew: () => Promise.resolve(identityFor(notAfter - 23 * HOUR, notAfter + 67 * DAY, "new")),
  });
  assert.ok(h.scheduler.nextAt() <= h.clock.now);
  assert.ok((await h.scheduler.runIfDue(new AbortController().signal)) !== null);
});

Deno.test("a failed renewal keeps the old identity and retries with the heartbeat backoff", async () => {
  const old = identityFor(T0, T0 + 90 * DAY);
  let answer: () => Promise<Identity> = () =>
    Promise.reject(
      new PlatformError("platform answered 503 unavailable", { kind: "http", httpStatus: 503 }),
    );
  const random = () => 0.5;
  const h = harness(old, { now: T0 + 61 * DAY, random, renew: () => answer() });
  const signal = new AbortController().signal;

  assert.equal(await h.scheduler.runIfDue(signal), null);
  assert.equal(h.scheduler.identity, old);
  assert.equal(h.scheduler.client, h.first);
  assert.equal(h.first.closed, 0);
  assert.deepEqual(h.saved, []);
  assert.equal(h.scheduler.failures, 1);
  // Full-jitter backoff at random 0.5: half of the first ceiling, 1 s.
  assert.equal(h.scheduler.nextAt(), h.clock.now + 500);
  assert.deepEqual(h.status.current.renewal, {
    next_at: new Date(h.scheduler.nextAt()).toISOString(),
    last_error: "Cannot renew certificate: platform answered 503 unavailable",
    last_renewed_at: null,
  });

  // Not retried before the backoff has passed; the ceiling doubles with each failure.
  assert.equal(await h.scheduler.runIfDue(signal), null);
  assert.equal(h.renewCalls.length, 1);
  h.clock.now = h.scheduler.nextAt();
  await h.scheduler.runIfDue(signal);
  assert.equal(h.scheduler.failures, 2);
  assert.equal(h.scheduler.nextAt(), h.clock.now + 1000); // half of 2 s

  // Retry-After is a floor (+ up to 10 % so a fleet spreads out).
  answer = () =>
    Promise.reject(
      new PlatformError("platform answered 429", {
        kind: "http",
        httpStatus: 429,
        retryAfterSeconds: 120,
      }),
    );
  h.clock.now = h.scheduler.nextAt();
  await h.scheduler.runIfDue(signal);
  assert.equal(h.scheduler.nextAt(), h.clock.now + 120 * 1.05 * 1000);

  // A non-platform error is a failure too, never a throw.
  answer = () => Promise.reject(new TypeError("boom"));
  h.clock.now = h.scheduler.nextAt();
  assert.equal(await h.scheduler.runIfDue(signal), null);
  assert.equal(h.status.current.renewal?.last_error, "Cannot renew certificate: boom");
  assert.equal(h.scheduler.failures, 4);

  // Then it works: failures and the error are cleared.
  const renewedId = identityFor(h.clock.now, h.clock.now + 90 * DAY, "new");
  answer = () => Promise.resolve(renewedId);
  h.clock.now = h.scheduler.nextAt();
  assert.ok((await h.scheduler.runIfDue(signal)) !== null);
  assert.equal(h.scheduler.failures, 0);
  assert.equal(h.status.current.renewal?.last_error, null);
  assert.equal(h.scheduler.identity, renewedId);
});

Deno.test("a renewal whose identity cannot be stored keeps the old identity and client", async () => {
  const old = identityFor(T0, T0 + 90 * DAY);
  const h = harness(old, {
    now: T0 + 61 * DAY,
    saveFails: true,
    renew: () => Promise.resolve(identityFor(T0 + 61 * DAY, T0 + 151 * DAY, "new")),
  });
  assert.equal(await h.scheduler.runIfDue(new AbortController().signal), null);
  assert.equal(h.scheduler.identity, old);
  assert.equal(h.scheduler.client, h.first);
  assert.equal(h.first.closed, 0);
  assert.equal(h.created.length, 1);
  assert.equal(h.created[0]!.closed, 1, "the client for the unsaved identity is closed");
  assert.equal(h.status.current.renewal?.last_error, "Cannot renew certificate: disk full");
});

Deno.test("an aborted renewal is not counted as a failure", async () => {
  const stop = new AbortController();
  const h = harness(identityFor(T0, T0 + 90 * DAY), {
    now: T0 + 61 * DAY,
    renew: () => {
      stop.abort();
      return Promise.reject(new PlatformError("request was aborted", { kind: "aborted" }));
    },
  });
  const planned = h.scheduler.nextAt();
  assert.equal(await h.scheduler.runIfDue(stop.signal), null);
  assert.equal(h.scheduler.failures, 0);
  assert.equal(h.scheduler.nextAt(), planned);
  assert.equal(h.status.current.renewal?.last_error, null);
  // Already aborted: nothing is attempted.
  assert.equal(await h.scheduler.runIfDue(stop.signal), null);
  assert.equal(h.renewCalls.length, 1);
});

/** A platform-side renewal endpoint backed by a dev CA. */
class IssuingClient implements RenewalClient {
  readonly requests: Array<{ agentId: string; csr: string }> = [];
  constructor(
    readonly answer: (
      csr: string,
    ) => Promise<RenewResponse>,
  ) {}
  renewCertificate(agentId: string, body: RenewRequest): Promise<RenewResponse> {
    this.requests.push({ agentId, csr: body.csr });
    return this.answer(body.csr);
  }
  close(): void {}
}

function issuing(opts: { from?: typeof ca; token?: string } = {}) {
  return new IssuingClient(async (csr) => ({
    certificate: await issueFor(opts.from ?? ca, csr, {
      agentId: "agent-1",
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 30 * DAY),
    }),
    ca_certificates: [ca.certPem],
    ...(opts.token ? { service_account_token: opts.token } : {}),
  }));
}

Deno.test("renewIdentity makes a new key, keeps the subject and returns the verified identity", async () => {
  const old = await makeIdentity(ca, { commonName: "web-01.example" });
  const client = issuing();
  const renewed = await renewIdentity(old, client, { now: Date.now });
  const csr = new x509.Pkcs10CertificateRequest(client.requests[0]!.csr);
  assert.equal(client.requests[0]!.agentId, "agent-1");
  assert.deepEqual(csr.subjectName.getField("CN"), ["web-01.example"]);
  const oldKey = new x509.X509Certificate(old.certificate).publicKey.rawData;
  assert.notDeepEqual(new Uint8Array(csr.publicKey.rawData), new Uint8Array(oldKey));
  assert.notEqual(renewed.private_key, old.private_key);
  assert.notEqual(renewed.certificate, old.certificate);
  assert.equal(await keyMatchesCertificate(renewed.private_key, renewed.certificate), "match");
  const cert = new x509.X509Certificate(renewed.certificate);
  assert.equal(renewed.certificate_not_before, cert.notBefore.toISOString());
  assert.equal(renewed.certificate_not_after, cert.notAfter.toISOString());
  // Unchanged: who the agent is; the token is kept when the platform does not rotate it.
  assert.equal(renewed.service_account_token, old.service_account_token);
  assert.deepEqual(
    {
      ...renewed,
      certificate: "",
      private_key: "",
      certificate_not_before: "",
      certificate_not_after: "",
    },
    {
      ...old,
      certificate: "",
      intermediate_certificates: [],
      private_key: "",
      certificate_not_before: "",
      certificate_not_after: "",
    },
  );

  const rotated = await renewIdentity(old, issuing({ token: "oc_sat_rotated_1234567890" }), {
    now: Date.now,
  });
  assert.equal(rotated.service_account_token, "oc_sat_rotated_1234567890");
});

Deno.test({
  name: "renewIdentity checks the answer's chain and keeps its intermediates (openssl PKI)",
  ignore: skipWithout(opensslAvailable()),
  async fn() {
    const pki = await sharedOpensslPki();
    const old = await makeIdentity(ca);
    const chained = (chain: (leaf: string) => string) =>
      new IssuingClient(async (csr) => ({
        certificate: chain(await pki.signAgentCsr(csr, "issuing")),
        ca_certificates: [pki.root.certPem],
      }));
    const renewed = await renewIdentity(old, chained((leaf) => leaf + pki.issuing.certPem), {
      now: Date.now,
    });
    assert.equal(await keyMatchesCertificate(renewed.private_key, renewed.certificate), "match");
    assert.equal(new x509.X509Certificate(renewed.certificate).issuer, "CN=Test Issuing CA");
    assert.deepEqual(renewed.intermediate_certificates, [pki.issuing.certPem]);
    assert.deepEqual(renewed.ca_certificates, [pki.root.certPem]);

    const broken = await renewIdentity(old, chained((leaf) => pki.issuing.certPem + leaf), {
      now: Date.now,
    }).then(() => null, (e) => e);
    assert.ok(broken instanceof PlatformError);
    assert.match(
      broken.message,
      /^refusing the platform's answer: certificate chain is in the wrong order: .*; the current certificate is kept$/,
    );
  },
});

Deno.test("renewIdentity refuses a certificate for another key, from another CA, or not yet valid", async () => {
  const old = await makeIdentity(ca);
  const cases: Array<[IssuingClient, RegExp]> = [
    [
      new IssuingClient(() =>
        Promise.resolve({ certificate: old.certificate, ca_certificates: [ca.certPem] })
      ),
      /certificate was issued for another key/,
    ],
    [issuing({ from: otherCa }), /not signed by any of the ca_certificates/],
    [
      new IssuingClient(async (csr) => ({
        certificate: await issueFor(ca, csr, {
          agentId: "agent-1",
          notBefore: new Date(Date.now() + HOUR),
          notAfter: new Date(Date.now() + 30 * DAY),
        }),
        ca_certificates: [ca.certPem],
      })),
      /certificate is not valid until .*60 minutes from now/,
    ],
  ];
  for (const [client, why] of cases) {
    const e = await renewIdentity(old, client, { now: Date.now }).then(() => null, (e) => e);
    assert.ok(e instanceof PlatformError, String(e));
    assert.equal(e.kind, "invalid_response");
    assert.match(e.message, /^refusing the platform's answer: /);
    assert.match(e.message, why);
    assert.match(e.message, /; the current certificate is kept$/);
  }
});

Deno.test("renew stores the renewed identity and records it in status", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(join(dir.path, "state"));
  const old = await makeIdentity(ca);
  await store.save(old);
  const { ctx, out } = testContext(store.stateDir);
  const client = issuing();
  await renewCommand(ctx, { createClient: () => client, random: () => 0.5 });
  const stored = await store.load();
  assert.notEqual(stored.certificate, old.certificate);
  assert.notEqual(stored.private_key, old.private_key);
  assert.deepEqual(out, [
    `renewed the certificate of agent-1; valid until ${stored.certificate_not_after}\n`,
  ]);
  const status = await readStatus(statusPath(store.stateDir));
  assert.equal(status?.certificate_expires_at, stored.certificate_not_after);
  assert.equal(status?.renewal?.last_error, null);
  assert.ok(status?.renewal?.last_renewed_at);
  const life = Date.parse(stored.certificate_not_after) - Date.parse(stored.certificate_not_before);
  assert.equal(
    status?.renewal?.next_at,
    new Date(Date.parse(stored.certificate_not_before) + life * 2 / 3).toISOString(),
  );
  const mode = (await Deno.stat(store.identityPath)).mode! & 0o777;
  assert.equal(mode, 0o600);
});

Deno.test("renew exits 3 when the platform no longer knows the agent and 4 when it fails", async () => {
  const cases: Array<[PlatformError, number, RegExp]> = [
    [
      new PlatformError("platform answered 410 agent_unknown: deleted", {
        kind: "http",
        httpStatus: 410,
        code: "agent_unknown",
        contentType: "application/problem+json",
      }),
      3,
      /^Cannot renew certificate: platform answered 410 agent_unknown: deleted; the platform no longer accepts this agent: re-enroll/,
    ],
    [
      new PlatformError("platform answered 503", { kind: "http", httpStatus: 503 }),
      4,
      /^Cannot renew certificate: platform answered 503$/,
    ],
    // Only the platform's problem document rejects: an edge's HTML 401 is a failed attempt.
    [
      new PlatformError('platform answered 401 with "text/html", not JSON', {
        kind: "http",
        httpStatus: 401,
        contentType: "text/html",
      }),
      4,
      /^Cannot renew certificate: platform answered 401 with "text\/html", not JSON$/,
    ],
  ];
  for (const [error, code, message] of cases) {
    await using dir = await tempDir();
    const store = new IdentityStore(join(dir.path, "state"));
    const old = await makeIdentity(ca);
    await store.save(old);
    const { ctx, out } = testContext(store.stateDir);
    const client = new IssuingClient(() => Promise.reject(error));
    const e = await renewCommand(ctx, { createClient: () => client }).then(() => null, (e) => e);
    assert.ok(code === 3 ? e instanceof CredentialRejectedError : e instanceof PlatformError);
    assert.equal(e.exitCode, code);
    assert.match(e.message, message);
    assert.deepEqual(out, []);
    assert.deepEqual(await store.load(), old);
    const status = await readStatus(statusPath(store.stateDir));
    assert.match(status?.renewal?.last_error ?? "", /^Cannot renew certificate: platform answered/);
  }
});

Deno.test("renew on a cloned identity exits 3 before any request and keeps the identity", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(join(dir.path, "state"));
  const old = { ...(await makeIdentity(ca)), machine_id: "3d1219c7c4c5404aaa1f6d2a48adfda4" };
  await store.save(old);
  const { ctx, out } = testContext(store.stateDir);
  let clients = 0;
  const e = await renewCommand(ctx, {
    createClient: () => {
      clients++;
      return issuing();
    },
    machineId: () => Promise.resolve("ffffffffffffffffffffffffffffffff"),
  }).then(() => null, (e) => e);
  assert.ok(e instanceof CredentialRejectedError, String(e));
  assert.equal(e.exitCode, 3);
  assert.match(
    e.message,
    /^Refusing to renew the certificate: identity was enrolled on another host/,
  );
  assert.equal(clients, 0, "no connection to the platform");
  assert.deepEqual(out, []);
  assert.deepEqual(await store.load(), old);
  // The enrolling host (same machine id) and a host without one still renew.
  for (const machineId of ["3d1219c7c4c5404aaa1f6d2a48adfda4", null]) {
    await renewCommand(ctx, {
      createClient: () => issuing(),
      machineId: () => Promise.resolve(machineId),
    });
  }
  assert.notEqual((await store.load()).certificate, old.certificate);
});

Deno.test("renew when not enrolled exits 5", async () => {
  await using dir = await tempDir();
  const { ctx } = testContext(join(dir.path, "state"));
  const e = await renewCommand(ctx).then(() => null, (e) => e);
  assert.ok(e instanceof NotEnrolledError);
  assert.equal(e.exitCode, 5);
});

Deno.test("run's modules load X.509 code only when a renewal happens", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "src/commands/run.ts"],
    cwd: repoPath(),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: Array<{
      specifier: string;
      dependencies?: Array<{ code?: { specifier: string }; isDynamic?: boolean }>;
    }>;
  };
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  const root = new URL("../src/commands/run.ts", import.meta.url).href;
  const seen = new Set<string>();
  const queue = [root];
  while (queue.length > 0) {
    const next = queue.pop()!;
    if (seen.has(next)) continue;
    seen.add(next);
    for (const dep of bySpecifier.get(next)?.dependencies ?? []) {
      if (!dep.isDynamic && dep.code) queue.push(dep.code.specifier);
    }
  }
  assert.ok(
    seen.has(new URL("../src/enrollment/renewal.ts", import.meta.url).href),
    [...seen].join("\n"),
  );
  const heavy = [...seen].filter((s) => /x509|certificates\.ts$/.test(s));
  assert.deepEqual(heavy, []);
});

Deno.test("a renewed identity whose client cannot reach the platform is not stored (proving request)", async () => {
  const identity = identityFor(T0, T0 + 3 * DAY);
  class Unreachable extends FakeClient {
    health(): Promise<unknown> {
      return Promise.reject(
        new PlatformError(
          'TLS handshake with "127.0.0.1:1" failed: certificate is not signed by a pinned CA (UnknownIssuer)',
          { kind: "tls" },
        ),
      );
    }
  }
  const saved: Identity[] = [];
  const status = { current: emptyStatus(identity.agent_id), save: () => Promise.resolve() };
  const created: Unreachable[] = [];
  using scheduler = new RenewalScheduler<FakeClient>({
    identity,
    client: new FakeClient("first"),
    createClient: () => {
      const c = new Unreachable("renewed");
      created.push(c);
      return c;
    },
    store: { save: (id) => Promise.resolve(void saved.push(id)) },
    status,
    logger: silentLogger,
    now: () => T0 + 3 * DAY - HOUR,
    random: () => 0.5,
    renew: () => Promise.resolve(identityFor(T0, T0 + 30 * DAY, "new")),
  });
  assert.equal(await scheduler.runIfDue(new AbortController().signal), null);
  assert.deepEqual(saved, []);
  assert.equal(scheduler.identity, identity);
  assert.equal(created[0]?.closed, 1);
  assert.match(
    status.current.renewal?.last_error ?? "",
    /^Cannot renew certificate: the renewed identity cannot reach the platform \(GET api\/v1\/health: TLS handshake .*UnknownIssuer\)\); the current certificate is kept$/,
  );
});

Deno.test("renewAndStore renews, proves the new client, then stores; both clients stay the caller's", async () => {
  const old = identityFor(T0, T0 + 90 * DAY);
  const renewed = identityFor(T0 + 61 * DAY, T0 + 151 * DAY, "new");
  const order: string[] = [];
  class Proving extends FakeClient {
    health(): Promise<unknown> {
      order.push(`health ${this.label}`);
      return Promise.resolve({});
    }
  }
  const first = new Proving("cert-old");
  const result = await renewAndStore(old, first, {
    createClient: (id) => {
      order.push(`client ${id.certificate}`);
      return new Proving(id.certificate);
    },
    store: {
      save: (id) => {
        order.push(`save ${id.certificate}`);
        return Promise.resolve();
      },
    },
    now: () => T0 + 61 * DAY,
    signal: new AbortController().signal,
    renew: (id, client) => {
      order.push(`renew ${id.certificate} via ${client.label}`);
      return Promise.resolve(renewed);
    },
  });
  assert.deepEqual(order, [
    "renew cert-old via cert-old",
    "client cert-new",
    "health cert-new",
    "save cert-new",
  ]);
  assert.equal(result.identity, renewed);
  assert.equal(result.client.label, "cert-new");
  assert.equal(result.client.closed, 0);
  assert.equal(first.closed, 0);
});

Deno.test("renewAndStore stores nothing and closes the new client when the proof or the save fails", async () => {
  const old = identityFor(T0, T0 + 90 * DAY);
  const renewed = identityFor(T0 + 61 * DAY, T0 + 151 * DAY, "new");
  for (const failing of ["proof", "save"] as const) {
    class Client extends FakeClient {
      health(): Promise<unknown> {
        return failing === "proof"
          ? Promise.reject(new PlatformError("platform answered 503", { kind: "http" }))
          : Promise.resolve({});
      }
    }
    const created: Client[] = [];
    const saved: Identity[] = [];
    const error = await renewAndStore(old, new Client("old"), {
      createClient: () => {
        created.push(new Client("new"));
        return created.at(-1)!;
      },
      store: {
        save: (id) => {
          if (failing === "save") return Promise.reject(new Error("disk full"));
          saved.push(id);
          return Promise.resolve();
        },
      },
      now: () => T0 + 61 * DAY,
      signal: new AbortController().signal,
      renew: () => Promise.resolve(renewed),
    }).then(() => null, (e) => e);
    assert.match(
      String(error?.message),
      failing === "proof"
        ? /^the renewed identity cannot reach the platform \(GET api\/v1\/health: platform answered 503\); the current certificate is kept$/
        : /^disk full$/,
    );
    assert.deepEqual(saved, [], failing);
    assert.equal(created.length, 1);
    assert.equal(created[0]!.closed, 1, `${failing}: the new client is closed`);
  }
});

Deno.test("renew reports a failed store as it is and records no renewal failure in status", async () => {
  await using dir = await tempDir();
  const store = new IdentityStore(join(dir.path, "state"));
  const old = await makeIdentity(ca);
  await store.save(old);
  const { ctx, out } = testContext(store.stateDir);
  let clients = 0;
  const e = await renewCommand(ctx, {
    createClient: () => {
      // The second client is the renewed identity's, made just before it is stored.
      if (++clients === 2) {
        Deno.renameSync(store.identityPath, join(dir.path, "moved.json"));
        Deno.mkdirSync(store.identityPath);
      }
      return issuing();
    },
  }).then(() => null, (e) => e);
  assert.ok(e instanceof UsageError, String(e));
  assert.match(e.message, /^Cannot write identity file ".*identity\.json": /);
  assert.deepEqual(out, []);
  assert.equal(await readStatus(statusPath(store.stateDir)), null, "status.json untouched");
});
