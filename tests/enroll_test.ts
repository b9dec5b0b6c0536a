import assert from "node:assert/strict";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import type { CommandContext } from "../src/config/context.ts";
import {
  type EnrollRequest,
  type EnrollResponse,
  EnrollResponseSchema,
} from "../src/wire/contract.ts";
import type { EnrollDeps, EnrollOptions } from "../src/enrollment/enroll.ts";
import type { EnrollClientOptions } from "../src/enrollment/obtain_identity.ts";
import type { EnrollClient } from "../src/enrollment/enroll_request.ts";
import { enrollCommand } from "../src/commands/enroll.ts";
import {
  AgentError,
  AlreadyEnrolledError,
  CredentialRejectedError,
  ExitCode,
  InterruptedError,
  PlatformError,
  ShutdownRequest,
  UsageError,
} from "../src/errors.ts";
import { denoFileSystem, type FileSystem } from "../src/file_system.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { createLogger, redact } from "../src/log.ts";
import type { Host } from "../src/wire/telemetry_wire.ts";
import { VERSION } from "../src/version.ts";
import {
  createDevCa,
  type DevCa,
  issueAgentCertificate,
  parseCsr,
} from "../tasks/dev_platform/dev_ca.ts";
import { exists, rejectsWith, skipWithout, tempDir } from "./_support/helpers.ts";
import { testContext } from "./_support/context_fixture.ts";
import { TEST_HOST } from "./_support/host_fixture.ts";
import { opensslAvailable, sharedOpensslPki } from "./_support/openssl_pki.ts";

const HOST: Host = { ...TEST_HOST, hostname: "web-01", machine_id: "4c4c4544-0042" };

type Answer = (body: EnrollRequest, signal?: AbortSignal) => Promise<EnrollResponse>;

/** A scripted platform: one answer per attempt (the last one repeats). */
class FakePlatform {
  readonly requests: EnrollRequest[] = [];
  readonly clientOptions: EnrollClientOptions[] = [];
  closed = 0;
  #answers: Answer[];
  constructor(readonly ca: DevCa, answers: Answer[]) {
    this.#answers = answers;
  }
  client(): EnrollDeps["createClient"] {
    return (options) => {
      this.clientOptions.push(options);
      const client: EnrollClient = {
        enroll: async (body, signal) => {
          this.requests.push(structuredClone(body));
          const answer = this.#answers[Math.min(this.requests.length, this.#answers.length) - 1]!;
          // As the PlatformClient does: its answer is validated against the contract.
          const parsed = EnrollResponseSchema.safeParse(await answer(body, signal));
          if (parsed.success) return parsed.data;
          const issue = parsed.error.issues[0];
          throw new PlatformError(
            `platform answered 201 with an unexpected body: field "${
              issue?.path.map(String).join(".")
            }": ${issue?.message}`,
            { kind: "invalid_response", httpStatus: 201 },
          );
        },
        close: () => {
          this.closed++;
        },
      };
      return Promise.resolve(client);
    };
  }
}

async function issue(
  ca: DevCa,
  csrPem: string,
  opts: { notBefore?: Date; notAfter?: Date; agentId?: string } = {},
): Promise<string> {
  const now = Date.now();
  const cert = await issueAgentCertificate(ca, {
    agentId: opts.agentId ?? "agent-1",
    csr: await parseCsr(csrPem),
    notBefore: opts.notBefore ?? new Date(now - 60_000),
    notAfter: opts.notAfter ?? new Date(now + 86_400_000),
  });
  return cert.toString("pem");
}

function ok(ca: DevCa, extra: Partial<EnrollResponse> = {}): Answer {
  return async (body) => ({
    agent_id: "agent-1",
    certificate: await issue(ca, body.csr),
    ca_certificates: [ca.certPem],
    service_account_token: "sat-secret-0123456789",
    heartbeat_interval_seconds: 30,
    ...extra,
  });
}

/** A failed answer as PlatformClient reports it; with a `code`, a problem document by default. */
function fail(
  status: number | undefined,
  opts: {
    code?: string;
    detail?: string;
    retryAfter?: number;
    kind?: PlatformError["kind"];
    contentType?: string;
    message?: string;
  } = {},
): Answer {
  return () =>
    Promise.reject(
      new PlatformError(
        opts.message ?? (status === undefined
          ? 'connection to "127.0.0.1:1" refused'
          : `platform answered ${status}${opts.code ? ` ${opts.code}` : ""}`),
        {
          kind: opts.kind ?? (status === undefined ? "network" : "http"),
          httpStatus: status,
          code: opts.code,
          detail: opts.detail,
          retryAfterSeconds: opts.retryAfter,
          contentType: opts.contentType ?? (opts.code ? "application/problem+json" : undefined),
        },
      ),
    );
}

interface Harness extends AsyncDisposable {
  stateDir: string;
  dir: string;
  ctx: CommandContext;
  out: string[];
  logs: string[];
  sleeps: number[];
  deps: Partial<EnrollDeps>;
  store: IdentityStore;
  run(options?: Partial<EnrollOptions>): Promise<void>;
}

async function harness(
  platform: FakePlatform,
  opts: {
    env?: Record<string, string>;
    stdin?: string;
    caFile?: string;
    fs?: FileSystem;
    url?: string | null;
    shutdown?: AbortSignal;
  } = {},
): Promise<Harness> {
  const dir = await tempDir();
  const stateDir = join(dir.path, "state");
  const logs: string[] = [];
  const sleeps: number[] = [];
  let clock = Date.now();
  const { ctx, out } = testContext(stateDir, {
    config: {
      logLevel: "debug",
      platformUrl: opts.url === null ? undefined : new URL(opts.url ?? "https://platform.test/"),
      caFile: opts.caFile,
    },
    logger: createLogger({ level: "debug", write: (line) => logs.push(line) }),
    env: opts.env,
    stdin: opts.stdin,
    shutdown: opts.shutdown,
  });
  const deps: Partial<EnrollDeps> = {
    createClient: platform.client(),
    prove: () => Promise.resolve(),
    collectHost: () => Promise.resolve(structuredClone(HOST)),
    hostname: () => "fallback-host",
    sleep: (ms) => {
      sleeps.push(ms);
      clock += ms;
      return Promise.resolve();
    },
    random: () => 0.5,
    now: () => clock,
    fs: opts.fs ?? denoFileSystem,
  };
  const store = new IdentityStore(stateDir);
  return {
    stateDir,
    dir: dir.path,
    ctx,
    out,
    logs,
    sleeps,
    deps,
    store,
    run: (options = {}) =>
      enrollCommand(ctx, { force: false, check: false, timeoutSeconds: 120, ...options }, deps),
    [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose](),
  };
}

const failure = (promise: Promise<unknown>) => rejectsWith(promise, AgentError);

async function writeToken(h: Harness, token = "tok-abcdef-123456"): Promise<string> {
  await Deno.mkdir(h.stateDir, { recursive: true, mode: 0o700 });
  const path = join(h.stateDir, "enrollment.token");
  await Deno.writeTextFile(path, `${token}\n`, { mode: 0o600 });
  return path;
}

Deno.test("enroll stores a verified identity, deletes the token file and prints the id", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using h = await harness(platform);
  const tokenPath = await writeToken(h);
  await h.run();

  assert.deepEqual(h.out, ["enrolled as agent-1\n"]);
  assert.equal(await exists(tokenPath), false);
  const identity = await h.store.load();
  assert.equal(identity.agent_id, "agent-1");
  assert.equal(identity.platform_url, "https://platform.test/");
  assert.equal(identity.service_account_token, "sat-secret-0123456789");
  assert.equal(identity.machine_id, HOST.machine_id);
  assert.equal(identity.heartbeat_interval_seconds, 30);
  assert.deepEqual(identity.ca_certificates, [ca.certPem]);
  assert.deepEqual(identity.bootstrap_ca_certificates, []);
  const cert = new x509.X509Certificate(identity.certificate);
  assert.equal(identity.certificate_not_after, cert.notAfter.toISOString());

  const [request] = platform.requests;
  assert.equal(platform.requests.length, 1);
  assert.equal(request!.enrollment_token, "tok-abcdef-123456");
  assert.equal(request!.agent_version, VERSION);
  assert.deepEqual(request!.host, HOST);
  const csr = new x509.Pkcs10CertificateRequest(request!.csr);
  assert.deepEqual(csr.subjectName.getField("CN"), ["web-01"]);
  assert.ok(!JSON.stringify(request).includes("PRIVATE KEY"));
  assert.ok(!JSON.stringify(request).includes(identity.private_key.split("\n")[1]!));
  assert.equal(platform.closed, 1);
  assert.equal(platform.clientOptions[0]!.caCertificates, undefined);
  assert.equal(platform.clientOptions[0]!.baseUrl.href, "https://platform.test/");

  const joined = h.logs.join("\n");
  assert.match(joined, /INFO +Generating key/);
  assert.match(joined, /INFO +Contacting platform url=https:\/\/platform\.test\//);
  assert.match(joined, /INFO +Enrolled as "agent-1"/);
  assert.ok(!joined.includes("tok-abcdef-123456"));
  assert.ok(!joined.includes("sat-secret-0123456789"));
  assert.ok(!joined.includes("PRIVATE KEY"));
});

Deno.test("enroll token sources: --token-file, then environment, then state-dir file", async () => {
  const ca = await createDevCa();
  {
    const platform = new FakePlatform(ca, [ok(ca)]);
    await using h = await harness(platform, {
      env: { ONECONNECT_ENROLLMENT_TOKEN: "env-token-1234" },
    });
    const stateToken = await writeToken(h, "state-token-1234");
    const flagToken = join(h.dir, "flag.token");
    await Deno.writeTextFile(flagToken, "  flag-token-1234 \r\n");
    await h.run({ tokenFile: flagToken });
    assert.equal(platform.requests[0]!.enrollment_token, "flag-token-1234");
    assert.equal(await exists(flagToken), false);
    assert.equal(await exists(stateToken), true);
  }
  {
    const platform = new FakePlatform(ca, [ok(ca)]);
    await using h = await harness(platform, {
      env: { ONECONNECT_ENROLLMENT_TOKEN: "env-token-1234" },
    });
    const stateToken = await writeToken(h, "state-token-1234");
    await h.run();
    assert.equal(platform.requests[0]!.enrollment_token, "env-token-1234");
    assert.equal(await exists(stateToken), true, "an unused token file is not touched");
  }
  {
    const platform = new FakePlatform(ca, [ok(ca)]);
    await using h = await harness(platform, { stdin: "stdin-token-1234\n" });
    await h.run({ tokenFile: "-" });
    assert.equal(platform.requests[0]!.enrollment_token, "stdin-token-1234");
  }
});

Deno.test("enroll refuses an empty or missing token, naming the source", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  {
    await using h = await harness(platform, { env: { ONECONNECT_ENROLLMENT_TOKEN: "  " } });
    const e = await failure(h.run());
    assert.equal(e.message, "Enrollment token from ONECONNECT_ENROLLMENT_TOKEN is empty");
    assert.equal(e.exitCode, 2);
  }
  {
    await using h = await harness(platform, { stdin: "\n" });
    const e = await failure(h.run({ tokenFile: "-" }));
    assert.equal(e.message, "Enrollment token from standard input is empty");
  }
  {
    await using h = await harness(platform);
    const path = await writeToken(h, "   ");
    const e = await failure(h.run());
    assert.equal(e.message, `Enrollment token file ${JSON.stringify(path)} is empty`);
    assert.equal(await exists(path), true);
  }
  {
    await using h = await harness(platform);
    const e = await failure(h.run());
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /^No enrollment token found; pass --token-file <path> \(- for stdin\)/);
    assert.equal(redact(e.message), e.message, "the hint must survive redaction");
    assert.match(e.message, /enrollment\.token"$/);
  }
  {
    await using h = await harness(platform);
    const e = await failure(h.run({ tokenFile: join(h.dir, "missing.token") }));
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /missing\.token" \(--token-file\)/);
  }
  assert.equal(platform.requests.length, 0);
});

Deno.test({
  name: "enroll refuses a token file that is a symbolic link",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const ca = await createDevCa();
    const platform = new FakePlatform(ca, [ok(ca)]);
    await using h = await harness(platform);
    await Deno.mkdir(h.stateDir, { recursive: true });
    const real = join(h.dir, "real.token");
    await Deno.writeTextFile(real, "tok-abcdef-123456");
    await Deno.symlink(real, join(h.stateDir, "enrollment.token"));
    const e = await failure(h.run());
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /enrollment\.token": it is a symbolic link/);
    assert.equal(platform.requests.length, 0);
  },
});

Deno.test("enroll retries 503, 429 and network errors with Retry-After as a floor", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [
    fail(503, { code: "unavailable", retryAfter: 7 }),
    fail(undefined),
    fail(429, { code: "rate_limited", retryAfter: 2 }),
    ok(ca),
  ]);
  await using h = await harness(platform);
  await writeToken(h);
  await h.run();
  assert.equal(platform.requests.length, 4);
  // random() = 0.5: full jitter gives 0.5, 1, 2 s; Retry-After 7 s and 2 s are floors.
  assert.deepEqual(h.sleeps, [7000, 1000, 2000]);
  assert.equal(h.out.at(-1), "enrolled as agent-1\n");
  assert.match(
    h.logs.join("\n"),
    /WARN +Enrollment attempt failed; retrying attempt=1 retry_in_seconds=7/,
  );
});

Deno.test("enroll fails at once on 400 and on TLS errors (exit 4, nothing written)", async () => {
  const ca = await createDevCa();
  for (const answer of [fail(400, { code: "invalid_csr" }), fail(undefined, { kind: "tls" })]) {
    const platform = new FakePlatform(ca, [answer, ok(ca)]);
    await using h = await harness(platform);
    const token = await writeToken(h);
    const e = await failure(h.run());
    assert.ok(e instanceof PlatformError);
    assert.equal(e.exitCode, 4);
    assert.match(e.message, /^Cannot enroll: (platform answered 400|connection)/);
    assert.equal(platform.requests.length, 1);
    assert.deepEqual(h.sleeps, []);
    assert.equal(await h.store.exists(), false);
    assert.equal(await exists(token), true);
  }
});

Deno.test("enroll refuses a 2xx answer the client could not parse, saying the token is spent", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [
    () =>
      Promise.reject(
        new PlatformError('platform answered 201 with an unexpected body: field "agent_id"', {
          kind: "invalid_response",
          httpStatus: 201,
        }),
      ),
  ]);
  await using h = await harness(platform);
  const token = await writeToken(h);
  const e = await failure(h.run());
  assert.ok(e instanceof PlatformError);
  assert.equal(e.exitCode, 4);
  assert.match(e.message, /^Cannot enroll: refusing the platform's answer: .*"agent_id".*used up/);
  assert.equal(platform.requests.length, 1);
  assert.equal(await h.store.exists(), false);
  assert.equal(await exists(token), true);
});

Deno.test("enroll maps 401 and 409 to exit 3 with code, detail and what to do", async () => {
  const ca = await createDevCa();
  for (
    const [status, code, detail] of [
      [401, "enrollment_token_invalid", "unknown or expired token"],
      [409, "enrollment_token_consumed", "token already used"],
    ] as const
  ) {
    const platform = new FakePlatform(ca, [fail(status, { code, detail })]);
    await using h = await harness(platform);
    const token = await writeToken(h);
    const e = await failure(h.run());
    assert.ok(e instanceof CredentialRejectedError);
    assert.equal(e.exitCode, 3);
    assert.equal(
      e.message,
      `Cannot enroll: platform answered ${status} ${code}: ${detail}; ask for a new enrollment token`,
    );
    assert.equal(platform.requests.length, 1);
    assert.equal(await h.store.exists(), false);
    assert.equal(await exists(token), true);
  }
});

for (
  const [what, answer, shown] of [
    [
      "an edge's HTML 401",
      fail(401, {
        contentType: "text/html",
        message:
          'platform answered 401 with "text/html", not JSON (page title "401 Authorization Required")',
      }),
      /platform answered 401 with "text\/html", not JSON \(page title "401 Authorization Required"\) \("text\/html", not a platform rejection: gave up\)$/,
    ],
    [
      "a plain-JSON 409 with a contract code",
      fail(409, { code: "enrollment_token_consumed", contentType: "application/json" }),
      /platform answered 409 enrollment_token_consumed \("application\/json", not a platform rejection: gave up\)$/,
    ],
    [
      "a problem 401 with a code the contract does not define",
      fail(401, { code: "token_unknown" }),
      /platform answered 401 token_unknown \("application\/problem\+json", not a platform rejection: gave up\)$/,
    ],
    [
      "a 409 without a body",
      fail(409),
      /platform answered 409 \(no content type, not a platform rejection: gave up\)$/,
    ],
  ] as const
) {
  Deno.test(`enroll retries ${what} within --timeout, then exits 4 keeping the token`, async () => {
    const ca = await createDevCa();
    const platform = new FakePlatform(ca, [answer]);
    await using h = await harness(platform);
    const token = await writeToken(h);
    const e = await failure(h.run({ timeoutSeconds: 10 }));
    assert.ok(e instanceof PlatformError, String(e));
    assert.equal(e.exitCode, 4);
    assert.match(e.message, /^Cannot enroll: gave up after 10 s \(--timeout\) and \d+ attempts: /);
    assert.match(e.message, shown);
    assert.ok(platform.requests.length >= 2, `retried: ${platform.requests.length}`);
    assert.match(
      h.logs.join("\n"),
      /Enrollment attempt failed; retrying.*not a platform rejection: retrying/,
    );
    assert.equal(await h.store.exists(), false);
    assert.equal(await exists(token), true);
  });
}

Deno.test("enroll gets past a transient HTML 401 from an edge and enrolls", async () => {
  const ca = await createDevCa();
  const edge = fail(401, {
    contentType: "text/html",
    message: 'platform answered 401 with "text/html", not JSON (page title "401 Unauthorized")',
  });
  const platform = new FakePlatform(ca, [edge, edge, ok(ca)]);
  await using h = await harness(platform);
  const token = await writeToken(h);
  await h.run({ timeoutSeconds: 60 });
  assert.equal(platform.requests.length, 3);
  assert.equal(await h.store.exists(), true);
  assert.equal(await exists(token), false);
});

Deno.test("enroll stopped by SIGTERM mid-request aborts it: exit 143, token maybe spent, nothing stored", async () => {
  const ca = await createDevCa();
  const stop = new AbortController();
  const hanging: Answer = (_body, signal) =>
    new Promise((_resolve, reject) => {
      signal?.addEventListener("abort", () =>
        reject(new PlatformError("request aborted", { kind: "aborted" })));
      stop.abort();
    });
  const stopBy = stop.abort.bind(stop);
  stop.abort = () => stopBy(new ShutdownRequest("SIGTERM"));
  await using h = await harness(new FakePlatform(ca, [hanging]), {
    env: { ONECONNECT_ENROLLMENT_TOKEN: "tok-0123456789" },
    shutdown: stop.signal,
  });
  const error = await failure(h.run());
  assert.ok(error instanceof InterruptedError, String(error));
  assert.equal(error.exitCode, 143);
  assert.equal(
    error.message,
    "Cannot enroll: interrupted; nothing was stored, but the enrollment token may already be spent (it was sent); if a retry is answered 409 enrollment_token_consumed, ask for a new token",
  );
  assert.equal(await h.store.exists(), false);
});

Deno.test("enroll that fails leaves no state directory it created", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [fail(401, { code: "enrollment_token_invalid" })]);
  await using h = await harness(platform, {
    env: { ONECONNECT_ENROLLMENT_TOKEN: "env-token-1234" },
  });
  const e = await failure(h.run());
  assert.equal(e.exitCode, 3);
  assert.equal(platform.requests.length, 1);
  assert.equal(await exists(h.stateDir), false);
});

Deno.test("enroll gives up within --timeout, and at once when Retry-After exceeds it", async () => {
  const ca = await createDevCa();
  {
    const platform = new FakePlatform(ca, [fail(503, { code: "unavailable" })]);
    await using h = await harness(platform);
    await writeToken(h);
    const e = await failure(h.run({ timeoutSeconds: 10 }));
    assert.ok(e instanceof PlatformError);
    assert.equal(e.httpStatus, 503);
    assert.match(e.message, /^Cannot enroll: gave up after 10 s \(--timeout\) and \d attempts: /);
    assert.ok(h.sleeps.reduce((a, b) => a + b, 0) <= 10_000);
    assert.ok(platform.requests.length >= 3);
  }
  {
    const platform = new FakePlatform(ca, [fail(503, { retryAfter: 3600 })]);
    await using h = await harness(platform);
    await writeToken(h);
    const e = await failure(h.run({ timeoutSeconds: 120 }));
    assert.match(e.message, /asked to retry after 3600 s, beyond --timeout 120 s \(1 attempts\)/);
    assert.equal(platform.requests.length, 1);
    assert.deepEqual(h.sleeps, []);
  }
});

Deno.test("enroll refuses a certificate for another key or an answer without agent_id", async () => {
  const ca = await createDevCa();
  const foreignKeys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  );
  const { createCsr } = await import("../src/trust/certificates.ts");
  const foreignCsr = await createCsr(foreignKeys, "someone-else");
  const answers: Array<[Answer, RegExp]> = [
    [
      async () => ({
        agent_id: "agent-1",
        certificate: await issue(ca, foreignCsr),
        ca_certificates: [ca.certPem],
        service_account_token: "sat-secret-0123456789",
      }),
      /issued for another key/,
    ],
    [
      async (body) =>
        ({
          certificate: await issue(ca, body.csr),
          ca_certificates: [ca.certPem],
          service_account_token: "sat-secret-0123456789",
        }) as unknown as EnrollResponse,
      /field "agent_id"/,
    ],
    [ok(ca, { agent_id: "../../etc" }), /field "agent_id"/],
    [ok(ca, { service_account_token: "" }), /field "service_account_token":/],
    [ok(ca, { ca_certificates: ["junk"] }), /ca_certificates\[0\] is not a PEM certificate/],
    [
      async (body) => ({
        agent_id: "agent-1",
        certificate: await issue(ca, body.csr, {
          notBefore: new Date(Date.now() + 3_600_000),
          notAfter: new Date(Date.now() + 7_200_000),
        }),
        ca_certificates: [ca.certPem],
        service_account_token: "sat-secret-0123456789",
      }),
      /not valid until .*60 minutes from now \(clock skew\? check this host's clock\)/,
    ],
  ];
  for (const [answer, why] of answers) {
    const platform = new FakePlatform(ca, [answer]);
    await using h = await harness(platform);
    const token = await writeToken(h);
    const e = await failure(h.run());
    assert.ok(e instanceof PlatformError, e.message);
    assert.equal(e.exitCode, 4);
    assert.match(e.message, /^Cannot enroll: refusing the platform's answer: /);
    assert.match(e.message, why);
    assert.match(e.message, /nothing was stored/);
    assert.equal(await h.store.exists(), false);
    assert.equal(await exists(token), true);
    assert.ok(!e.message.includes("sat-secret-0123456789"));
  }
});

Deno.test("enroll when already enrolled: same platform succeeds sending nothing, another exits 6", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using h = await harness(platform);
  await writeToken(h);
  await h.run();
  await writeToken(h);
  await h.run();
  assert.equal(h.out.at(-1), "already enrolled as agent-1\n");
  assert.equal(platform.requests.length, 1);
  h.ctx.config.platformUrl = new URL("https://other-platform.test/");
  const e = await failure(h.run());
  assert.ok(e instanceof AlreadyEnrolledError);
  assert.equal(e.exitCode, 6);
  assert.match(
    e.message,
    /^Already enrolled as "agent-1" in ".*state" with another platform \("https:\/\/platform\.test\/"\); pass --force to enroll with "https:\/\/other-platform\.test\/" and replace it$/,
  );
  assert.equal(platform.requests.length, 1);
});

Deno.test("enroll with a corrupt identity and no --force exits 2 naming the file", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using h = await harness(platform);
  await writeToken(h);
  await Deno.writeTextFile(h.store.identityPath, '{"version":1,"agent_');
  const e = await failure(h.run());
  assert.ok(e instanceof UsageError);
  assert.ok(e.message.includes(JSON.stringify(h.store.identityPath)));
  assert.equal(await Deno.readTextFile(h.store.identityPath), '{"version":1,"agent_');
  assert.equal(platform.requests.length, 0);
});

Deno.test("enroll --force replaces the identity only once the new one is verified", async () => {
  const ca = await createDevCa();
  let n = 0;
  const platform = new FakePlatform(ca, [
    (body) => ok(ca, { agent_id: `agent-${++n}` })(body),
  ]);
  await using h = await harness(platform);
  await writeToken(h);
  await h.run();
  const first = await h.store.load();
  await Deno.writeTextFile(h.store.secretFilePath("status.json"), "{}", { mode: 0o600 });

  const broken = new FakePlatform(ca, [ok(ca, { certificate: first.certificate })]);
  await writeToken(h);
  const e = await failure(
    enrollCommand(h.ctx, { force: true, check: false, timeoutSeconds: 120 }, {
      ...h.deps,
      createClient: broken.client(),
    }),
  );
  assert.match(e.message, /issued for another key/);
  assert.deepEqual(await h.store.load(), first);
  assert.equal(await exists(h.store.secretFilePath("status.json")), true);

  await h.run({ force: true });
  const second = await h.store.load();
  assert.equal(second.agent_id, "agent-2");
  assert.notEqual(second.private_key, first.private_key);
  assert.equal(await exists(h.store.secretFilePath("status.json")), false);
  assert.equal(h.out.at(-1), "enrolled as agent-2\n");
});

Deno.test({
  name:
    "enroll stores an intermediate-issued chain and refuses a broken one, keeping the old files",
  ignore: skipWithout(opensslAvailable()),
  async fn() {
    const pki = await sharedOpensslPki();
    const ca = await createDevCa();
    const chained = (chain: (leaf: string) => string): Answer => async (body) => ({
      agent_id: "agent-1",
      certificate: chain(await pki.signAgentCsr(body.csr, "issuing")),
      ca_certificates: [pki.root.certPem],
      service_account_token: "sat-secret-0123456789",
    });
    const platform = new FakePlatform(ca, [chained((leaf) => leaf + pki.issuing.certPem)]);
    await using h = await harness(platform);
    await writeToken(h);
    await h.run();
    const first = await h.store.load();
    assert.equal(new x509.X509Certificate(first.certificate).issuer, "CN=Test Issuing CA");
    assert.equal(first.certificate.match(/BEGIN CERTIFICATE/g)?.length, 1);
    assert.deepEqual(first.intermediate_certificates, [pki.issuing.certPem]);
    assert.deepEqual(first.ca_certificates, [pki.root.certPem]);
    const before = await Deno.readTextFile(h.store.identityPath);

    const cases: Array<[(leaf: string) => string, RegExp]> = [
      [(leaf) => leaf, /missing intermediate CA/],
      [(leaf) => pki.issuing.certPem + leaf, /certificate chain is in the wrong order/],
    ];
    for (const [chain, why] of cases) {
      const token = await writeToken(h);
      const e = await failure(
        enrollCommand(h.ctx, { force: true, check: false, timeoutSeconds: 120 }, {
          ...h.deps,
          createClient: new FakePlatform(ca, [chained(chain)]).client(),
        }),
      );
      assert.equal(e.exitCode, 4);
      assert.match(e.message, why);
      assert.match(
        e.message,
        /; nothing was stored; the enrollment token is probably used up, so ask for a new one once the cause is fixed \(the same answer would spend it too\)$/,
      );
      assert.equal(e.message.split("\n").length, 1);
      assert.equal(await Deno.readTextFile(h.store.identityPath), before);
      assert.equal(await exists(token), true);
    }
  },
});

Deno.test("enroll passes the --ca-file bundle as bootstrap trust and stores it", async () => {
  const ca = await createDevCa();
  const corporate = await createDevCa({ commonName: "Corporate Root" });
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using dir = await tempDir();
  const caFile = join(dir.path, "bundle.pem");
  await Deno.writeTextFile(caFile, `# roots\n${ca.certPem}\n${corporate.certPem}`);
  await using h = await harness(platform, { caFile });
  await writeToken(h);
  await h.run();
  const bundle = [`${ca.certPem.trim()}\n`, `${corporate.certPem.trim()}\n`];
  assert.deepEqual(platform.clientOptions[0]!.caCertificates, bundle);
  assert.deepEqual((await h.store.load()).bootstrap_ca_certificates, bundle);

  await Deno.writeTextFile(caFile, "nothing useful");
  await using h2 = await harness(platform, { caFile });
  await writeToken(h2);
  const e = await failure(h2.run());
  assert.ok(e instanceof UsageError);
  assert.match(e.message, /^Invalid CA file ".*bundle\.pem": no PEM certificate/);
  assert.equal(platform.requests.length, 1);
});

Deno.test("enroll warns, naming the path, when the used token file cannot be deleted", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  const stubborn: FileSystem = {
    ...denoFileSystem,
    remove: (path) =>
      path.endsWith("enrollment.token")
        ? Promise.reject(new Deno.errors.PermissionDenied("Read-only file system"))
        : denoFileSystem.remove(path),
  };
  await using h = await harness(platform, { fs: stubborn });
  const token = await writeToken(h);
  await h.run();
  assert.equal(h.out.at(-1), "enrolled as agent-1\n");
  const warning = h.logs.find((l) => l.includes("WARN") && l.includes("token file"));
  assert.ok(warning?.includes(`Could not delete the used enrollment token file`));
  assert.ok(warning?.includes(token));
});

Deno.test("enroll without a URL is a usage error", async () => {
  // `enroll --check` (preflight) is covered by tests/preflight_test.ts.
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  {
    await using h = await harness(platform, { url: null });
    await writeToken(h);
    const e = await failure(h.run());
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /no platform URL; pass --url/);
  }
  assert.equal(platform.requests.length, 0);
});

Deno.test("enroll falls back to the OS hostname for the CSR common name", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using h = await harness(platform);
  await writeToken(h);
  h.deps.collectHost = () => Promise.resolve({ ...HOST, hostname: null });
  await h.run();
  const csr = new x509.Pkcs10CertificateRequest(platform.requests[0]!.csr);
  assert.deepEqual(csr.subjectName.getField("CN"), ["fallback-host"]);
});

Deno.test({
  name:
    "enroll tightens a group/other-readable enrollment.token to 0600, warning, before reading it",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const ca = await createDevCa();
    const platform = new FakePlatform(ca, [ok(ca)]);
    const events: string[] = [];
    const fs: FileSystem = {
      ...denoFileSystem,
      chmod: (path, mode) => {
        events.push(`chmod ${path.split("/").pop()} ${mode.toString(8)}`);
        return denoFileSystem.chmod(path, mode);
      },
      readRegularFile: async (path, maxBytes) => {
        if (path.endsWith("enrollment.token")) {
          events.push(`read mode ${((await Deno.stat(path)).mode! & 0o777).toString(8)}`);
        }
        return denoFileSystem.readRegularFile(path, maxBytes);
      },
    };
    await using h = await harness(platform, { fs });
    const token = await writeToken(h);
    await Deno.chmod(token, 0o644);
    await h.run();
    assert.deepEqual(events, ["chmod enrollment.token 600", "read mode 600"]);
    assert.ok(h.logs.some((l) => l.includes("enrollment.token") && /from 0644 to 0600/.test(l)));
  },
});

Deno.test("enroll refuses an agent_id that could act as a path segment", async () => {
  const ca = await createDevCa();
  for (const agentId of ["..", ".", ".hidden", "-x"]) {
    const platform = new FakePlatform(ca, [ok(ca, { agent_id: agentId })]);
    await using h = await harness(platform);
    await writeToken(h);
    const error = await failure(h.run());
    assert.equal(error.exitCode, ExitCode.unreachable, error.message);
    assert.match(error.message, /agent_id/);
    assert.equal(await exists(h.store.identityPath), false);
  }
});

Deno.test("enroll stores nothing when the proving request through the final client fails", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using h = await harness(platform);
  h.deps.prove = () =>
    Promise.reject(
      new PlatformError(
        'TLS handshake with "127.0.0.1:1" failed: certificate is not signed by a pinned CA (UnknownIssuer)',
        { kind: "tls" },
      ),
    );
  await writeToken(h);
  const error = await h.run().then(() => null, (e) => e);
  assert.ok(error instanceof PlatformError);
  assert.match(
    error.message,
    /^Cannot enroll: the new identity was not stored because its client cannot reach the platform \(GET api\/v1\/health: TLS handshake .*\(UnknownIssuer\)\); nothing was stored/,
  );
  assert.equal(await h.store.exists(), false);
});

Deno.test("enroll without --ca-file or --ca-pin trusts the OS store, says so once, and records it", async () => {
  const ca = await createDevCa();
  const platform = new FakePlatform(ca, [ok(ca)]);
  await using h = await harness(platform);
  await writeToken(h);
  await h.run();
  const warnings = h.logs.filter((l) => l.includes("operating system's trust store"));
  assert.equal(warnings.length, 1);
  assert.deepEqual((await h.store.load()).trust, { source: "system" });
});
