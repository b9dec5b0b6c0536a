/**
 * Property-based fuzzing (fast-check) of every parser that reads the platform's answers or the
 * agent's files: random inputs never escape the typed error path (AgentError subclasses) and no
 * message or log line ever contains a secret embedded in the input.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRetryAfter, RETRY_AFTER_CAP_SECONDS } from "../../src/platform/backoff.ts";
import { createDevCa, issueAgentCertificate, parseCsr } from "../../tasks/dev_platform/dev_ca.ts";
import {
  createCsr,
  exportPrivateKeyPem,
  generateAgentKeyPair,
  parseCertificate,
  splitPemBundle,
} from "../../src/trust/certificates.ts";
import { readFileConfig } from "../../src/config/config_file.ts";
import { AgentError, NotEnrolledError, PlatformError, UsageError } from "../../src/errors.ts";
import { denoFileSystem, type FileSystem } from "../../src/file_system.ts";
import { regularFile } from "../_support/helpers.ts";
import { HeartbeatSchedule, parseIntervalHint } from "../../src/heartbeat/schedule.ts";
import { IdentityStore } from "../../src/state/identity_store.ts";
import { clearSecrets, createLogger, redact, registerSecret } from "../../src/log.ts";
import { threadCpuMs } from "../_support/helpers.ts";
import { PlatformClient } from "../../src/platform/client.ts";
import { readStatus } from "../../src/state/status_store.ts";

/** Secret-looking values: long enough to be registered, no characters the redactor inserts. */
const secretArb = fc.stringMatching(/^[A-Za-z0-9_-]{12,40}$/);

/** Any JSON value, sometimes holding `secret` as a string or a key. */
function jsonWith(secret: string): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.jsonValue(),
    fc.constant(secret),
    fc.dictionary(
      fc.oneof(fc.string(), fc.constant(secret)),
      fc.oneof(fc.jsonValue(), fc.constant(secret)),
    ),
    fc.array(fc.oneof(fc.jsonValue(), fc.constant(secret))),
  );
}

function assertNoSecret(text: string, secrets: string[], where: string): void {
  for (const secret of secrets) {
    assert.ok(!text.includes(secret), `secret leaked in ${where}: ${text.slice(0, 300)}`);
  }
}

function memoryFs(files: Map<string, string>): FileSystem {
  const notFound = (path: string) => new Deno.errors.NotFound(`No such file: '${path}'`);
  return {
    ...denoFileSystem,
    readTextFile: (path) => {
      const text = files.get(path);
      return text === undefined ? Promise.reject(notFound(path)) : Promise.resolve(text);
    },
    lstat: (path) => {
      const text = files.get(path);
      if (text === undefined) return Promise.reject(notFound(path));
      return Promise.resolve({
        isFile: true,
        isDirectory: false,
        isSymlink: false,
        size: text.length,
        mode: 0o100600,
        // Ours: the ownership audit passes, so the content itself is what gets fuzzed.
        uid: Deno.uid(),
      } as Deno.FileInfo);
    },
    writeFileAtomic: () => Promise.reject(new Error("read-only in this test")),
  };
}

Deno.test("fuzz: parseRetryAfter never throws and stays within 0..3600 s", () => {
  const now = Date.now();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.integer().map(String),
        fc.double().map(String),
        fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()),
        fc.constantFrom("-5", "1e9", "Infinity", "NaN", " 10 ", "0x10", "99999999999999999999999"),
      ),
      (value) => {
        const seconds = parseRetryAfter(value, now);
        if (seconds === undefined) return;
        assert.ok(Number.isFinite(seconds), value);
        assert.ok(seconds >= 0 && seconds <= RETRY_AFTER_CAP_SECONDS, `${value} -> ${seconds}`);
        if (/^-/.test(value.trim())) assert.fail(`negative ${value} gave ${seconds}`);
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("fuzz: next_heartbeat_seconds and Retry-After never give a wait outside the bounds", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.jsonValue(), fc.double(), fc.integer(), fc.constantFrom(0, -5, 1e9, "60", null)),
      fc.option(fc.integer({ min: 0, max: RETRY_AFTER_CAP_SECONDS }), { nil: undefined }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (hint, retryAfter, r) => {
        const parsed = parseIntervalHint(hint);
        if (parsed.kind === "ok" || parsed.kind === "clamped") {
          assert.ok(Number.isInteger(parsed.seconds) && parsed.seconds >= 10);
          assert.ok(parsed.seconds <= 86400);
        }
        const schedule = new HeartbeatSchedule({ random: () => r });
        schedule.applyHint(hint);
        const success = schedule.afterSuccess();
        assert.ok(success >= 9 && success <= 86400 * 1.1, `after success ${success}`);
        for (let n = 1; n <= 12; n++) {
          const wait = schedule.afterFailure(retryAfter);
          assert.ok(Number.isFinite(wait) && wait >= 0, `wait ${wait}`);
          // Above a Retry-After floor the wait is spread over at most one jittered interval (herd fix).
          const spread = retryAfter === undefined ? 0 : retryAfter + schedule.intervalSeconds * 1.1;
          assert.ok(wait <= Math.max(300, spread), `wait ${wait}`);
          if (retryAfter !== undefined && retryAfter > 0) assert.ok(wait >= retryAfter);
        }
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("fuzz: redact removes every registered secret, bearer value and private key", () => {
  fc.assert(
    fc.property(
      secretArb,
      secretArb,
      fc.string(),
      fc.string(),
      fc.constantFrom(
        (s: string) => `Authorization: Bearer ${s}`,
        (s: string) => `{"authorization":"Bearer ${s}"}`,
        (s: string) => `service_account_token=${s}`,
        (s: string) => `"enrollment_token": "${s}"`,
        (s: string) => `https://user:${s}@proxy.example:3128`,
        // A token alone as the user part (proxies, git-style URLs).
        (s: string) => `https://${s}@proxy.example:3128`,
        (s: string) => `-----BEGIN PRIVATE KEY-----\n${s}\n-----END PRIVATE KEY-----`,
        (s: string) => `-----BEGIN EC PRIVATE KEY-----\n${s}`,
      ),
      (registered, shaped, before, after, wrap) => {
        clearSecrets();
        registerSecret(registered);
        const out = redact(`${before}${registered}${after}${wrap(shaped)}${before}`);
        assertNoSecret(out, [registered, shaped], "redact output");
      },
    ),
    { numRuns: 1000 },
  );
  clearSecrets();
});

Deno.test("fuzz: redact stays within 50 ms on long hostile text and never keeps half a secret at its cut", () => {
  // Pieces of the redaction patterns, repeated: what makes a backtracking pattern slow.
  const piece = fc.constantFrom(
    "a",
    "token",
    "://",
    "https://",
    "@",
    ":",
    " ",
    "Bearer ",
    "authorization: ",
    "password=",
    "-----BEGIN ",
    "PRIVATE KEY-----",
    "\n",
  );
  const hostile = fc.array(fc.tuple(piece, fc.integer({ min: 1, max: 20_000 })), {
    minLength: 1,
    maxLength: 8,
  }).map((runs) => runs.map(([p, n]) => p.repeat(n)).join(""));
  const started = performance.now();
  fc.assert(
    fc.property(
      hostile,
      secretArb,
      fc.constantFrom(
        (s: string) => `https://user:${s}@proxy.example:3128`,
        (s: string) => `https://${s}@proxy.example:3128`,
        (s: string) => `Authorization: Bearer ${s}`,
        (s: string) => `service_account_token=${s}`,
        (s: string) => `registered ${s}`,
      ),
      fc.integer({ min: 20, max: 400 }),
      (text, secret, wrap, max) => {
        clearSecrets();
        registerSecret(secret);
        const ms = threadCpuMs(() => redact(text));
        assert.ok(ms < 50, `redact of ${text.length} chars took ${ms.toFixed(1)} ms`);
        // A cut anywhere around the secret keeps no prefix of it long enough to matter.
        const out = redact(`${text.slice(0, max)} ${wrap(secret)} ${text.slice(0, 50)}`, max + 20);
        for (let n = 8; n <= secret.length; n++) {
          assert.ok(!out.includes(secret.slice(0, n)), `half of the secret kept: ${out}`);
        }
      },
    ),
    // A time budget, not only a count: the suite must not wait on the fuzzer.
    { numRuns: 300, interruptAfterTimeLimit: 20_000 },
  );
  assert.ok(performance.now() - started < 60_000);
  clearSecrets();
});

Deno.test("fuzz: agent.json parsing throws only UsageError and never echoes a proxy password", async () => {
  await fc.assert(
    fc.asyncProperty(
      secretArb,
      fc.oneof(
        fc.string(),
        fc.jsonValue().map((v) => JSON.stringify(v)),
        fc.record({
          platform_url: fc.oneof(fc.string(), fc.webUrl(), fc.integer()),
          log_level: fc.oneof(fc.constantFrom("debug", "info", "loud"), fc.integer()),
          timeout_seconds: fc.oneof(fc.integer(), fc.double(), fc.string()),
          interval_seconds: fc.oneof(fc.integer(), fc.constant("60")),
          auth: fc.oneof(fc.constantFrom("bearer", "mtls", "both"), fc.boolean()),
        }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      ),
      fc.constantFrom(
        (s: string) => ({ proxy_url: `http://user:${s}@proxy:3128` }),
        (s: string) => ({ proxy_url: `http://user:${s}@[bad` }),
        (s: string) => ({ proxy_url: `ftp://user:${s}@proxy` }),
        (s: string) => ({ proxy_url: 5, note: s.length }),
      ),
      async (secret, base, proxy) => {
        let text = base;
        try {
          const obj = JSON.parse(base);
          if (obj !== null && typeof obj === "object" && !Array.isArray(obj)) {
            text = JSON.stringify({ ...obj, ...proxy(secret) });
          }
        } catch {
          // not an object: used as is
        }
        try {
          await readFileConfig("/state", {
            readConfigFile: () => Promise.resolve({ text, info: regularFile() }),
          });
        } catch (e) {
          assert.ok(e instanceof UsageError, `not a UsageError: ${e}`);
          assert.doesNotMatch(e.message, /\n/);
          assertNoSecret(redact(e.message), [secret], "agent.json error");
        }
      },
    ),
    { numRuns: 500 },
  );
});

/** A valid identity to mutate. */
async function validIdentity(): Promise<Record<string, unknown>> {
  const keys = await generateAgentKeyPair();
  const privateKey = await exportPrivateKeyPem(keys.privateKey);
  const ca = await createDevCa();
  const csr = await parseCsr(await createCsr(keys, "fuzz-host"));
  const cert = await issueAgentCertificate(ca, {
    agentId: "agent-1",
    csr,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });
  return {
    version: 1,
    agent_id: "agent-1",
    platform_url: "https://platform.example/",
    certificate: cert.toString("pem"),
    ca_certificates: [ca.certPem],
    bootstrap_ca_certificates: [],
    private_key: privateKey,
    service_account_token: "oc_sat_" + "s".repeat(30),
    machine_id: null,
    enrolled_at: new Date().toISOString(),
    heartbeat_interval_seconds: 60,
    certificate_not_before: new Date().toISOString(),
    certificate_not_after: new Date(Date.now() + 86_400_000).toISOString(),
  };
}

Deno.test("fuzz: identity.json loading fails only typed and never shows a secret", async () => {
  const base = await validIdentity();
  const keyLines = (base.private_key as string).split("\n").filter((l) => l.length >= 16);
  const fields = Object.keys(base);
  await fc.assert(
    fc.asyncProperty(
      secretArb,
      fc.oneof(
        // A field replaced by any JSON value (the secret among them).
        fc.tuple(fc.constantFrom(...fields), fc.nat()).chain(([field]) =>
          jsonWith("SECRET").map((value) => ({ kind: "field" as const, field, value }))
        ),
        // Cut anywhere (a torn write).
        fc.nat().map((at) => ({ kind: "cut" as const, at })),
        // Bytes flipped.
        fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 4 })).map(([at, junk]) => ({
          kind: "junk" as const,
          at,
          junk,
        })),
        fc.string().map((text) => ({ kind: "text" as const, text })),
      ),
      async (secret, mutation) => {
        clearSecrets();
        const identity = { ...base, service_account_token: secret };
        let text = JSON.stringify(identity, null, 2);
        if (mutation.kind === "field") {
          const value = JSON.parse(
            JSON.stringify(mutation.value ?? null).replaceAll("SECRET", secret),
          );
          text = JSON.stringify({ ...identity, [mutation.field]: value });
        } else if (mutation.kind === "cut") {
          text = text.slice(0, mutation.at % text.length);
        } else if (mutation.kind === "junk") {
          const at = mutation.at % text.length;
          text = text.slice(0, at) + mutation.junk + text.slice(at + mutation.junk.length);
        } else {
          text = mutation.text;
        }
        const store = new IdentityStore("/state", {
          fs: memoryFs(new Map([["/state/identity.json", text]])),
        });
        try {
          await store.load();
        } catch (e) {
          assert.ok(e instanceof UsageError || e instanceof NotEnrolledError, `untyped: ${e}`);
          assert.doesNotMatch(e.message, /\n/);
          assertNoSecret(
            e.message,
            [secret, base.private_key as string, ...keyLines],
            "identity error",
          );
        }
      },
    ),
    { numRuns: 300 },
  );
  clearSecrets();
});

Deno.test("fuzz: status.json reading never throws for content and logs no secret", async () => {
  await fc.assert(
    fc.asyncProperty(
      secretArb,
      fc.oneof(
        fc.string(),
        fc.jsonValue().map((v) => JSON.stringify(v)),
        fc.record({
          version: fc.oneof(fc.constant(1), fc.jsonValue()),
          agent_id: fc.oneof(fc.string(), fc.constant(null)),
          sequence: fc.oneof(fc.integer(), fc.double(), fc.string()),
          sequence_reserved: fc.oneof(fc.integer(), fc.string()),
          consecutive_failures: fc.integer(),
          last_error: fc.jsonValue(),
          permission_repairs: fc.jsonValue(),
        }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      ),
      async (secret, content) => {
        const text = content.length > 2
          ? `${content.slice(0, -1)}${
            content.endsWith("}") ? `,"x":"${secret}"}` : content.slice(-1)
          }`
          : content;
        const logs: string[] = [];
        const status = await readStatus("/state/status.json", {
          fs: memoryFs(new Map([["/state/status.json", text]])),
          logger: createLogger({ level: "debug", write: (l) => logs.push(l) }),
        });
        if (status !== null) assert.equal(status.version, 1);
        for (const line of logs) assertNoSecret(line, [secret], "status log");
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("fuzz: certificate and PEM bundle parsers never throw", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.base64String().map((b) =>
          `-----BEGIN CERTIFICATE-----\n${b}\n-----END CERTIFICATE-----\n`
        ),
        fc.string().map((s) => `-----BEGIN CERTIFICATE-----${s}-----END CERTIFICATE-----`),
      ),
      (text) => {
        const blocks = splitPemBundle(text);
        for (const block of [text, ...blocks]) {
          const parsed = parseCertificate(block);
          assert.ok(typeof parsed === "string" || typeof parsed === "object");
        }
      },
    ),
    { numRuns: 500 },
  );
});

interface Scripted {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array<ArrayBuffer> | string;
}

const statusArb = fc.oneof(
  fc.constantFrom(200, 201, 204, 301, 302, 307, 400, 401, 403, 404, 409, 410, 429, 500, 502, 503),
  fc.integer({ min: 200, max: 599 }),
);

function answerArb(secret: string, token: string): fc.Arbitrary<Scripted> {
  const echoes = fc.constantFrom(
    secret,
    token,
    `Bearer ${token}`,
    `-----BEGIN PRIVATE KEY-----\n${secret}\n-----END PRIVATE KEY-----`,
    `service_account_token=${secret}`,
  );
  const problem = fc.record({
    type: fc.oneof(fc.string(), echoes),
    title: fc.oneof(fc.string(), echoes),
    status: fc.oneof(fc.integer(), fc.string()),
    detail: fc.oneof(fc.string(), echoes, echoes.map((e) => `bad token ${e} here`)),
    code: fc.oneof(fc.string(), echoes, fc.constantFrom("sequence_conflict", "credential_revoked")),
    last_sequence: fc.oneof(fc.integer(), fc.string()),
    service_account_token: echoes,
  }, { requiredKeys: [] });
  const body = fc.oneof(
    problem.map((p) => JSON.stringify(p)),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.record({
      next_heartbeat_seconds: fc.jsonValue(),
      agent_id: fc.oneof(fc.string(), echoes),
      certificate: fc.oneof(fc.string(), echoes),
      ca_certificates: fc.array(fc.string()),
      service_account_token: fc.oneof(fc.string(), echoes),
    }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
    fc.tuple(fc.string(), echoes).map(([s, e]) => `<html><title>${e}</title>${s}</html>`),
    fc.uint8Array({ maxLength: 512 }).map((b) => new Uint8Array(b)),
    fc.string(),
  );
  const headers = fc.record({
    "content-type": fc.oneof(
      fc.constantFrom(
        "application/json",
        "application/problem+json",
        "text/html",
        "text/plain",
        "application/json; charset=utf-8",
        "",
        "garbage",
      ),
      fc.string().filter((s) => /^[\x21-\x7e]*$/.test(s)),
    ),
    "retry-after": fc.oneof(
      fc.string().filter((s) => /^[\x20-\x7e]*$/.test(s)),
      fc.integer().map(String),
    ),
    location: fc.oneof(
      fc.webUrl(),
      echoes.map((e) => `http://evil.example/?t=${encodeURIComponent(e)}`),
      fc.constant(`http://u:${secret}@evil.example/`),
    ),
  }, { requiredKeys: [] });
  return fc.record({ status: statusArb, headers, body });
}

Deno.test("fuzz: platform answers (status, headers, body) fail only as PlatformError without secrets", async () => {
  let next: Scripted = { status: 200, headers: {}, body: "" };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    const { status, headers, body } = next;
    const noBody = status === 204 || status === 205 || status === 304;
    try {
      return new Response(noBody ? null : body, { status, headers });
    } catch {
      return new Response(noBody ? null : body, { status });
    }
  });
  const token = "oc_sat_" + crypto.randomUUID().replaceAll("-", "");
  const keyPem = await exportPrivateKeyPem((await generateAgentKeyPair()).privateKey);
  const keyLines = keyPem.split("\n").filter((l) => l.length >= 16);
  const kinds = new Map<string, number>();
  try {
    await fc.assert(
      fc.asyncProperty(
        secretArb.chain((secret) => fc.tuple(fc.constant(secret), answerArb(secret, token))),
        fc.constantFrom("heartbeat", "enroll", "renew", "unenroll", "health"),
        async ([secret, answer], operation) => {
          clearSecrets();
          registerSecret(secret);
          registerSecret(keyPem);
          next = answer;
          const logs: string[] = [];
          using client = new PlatformClient({
            baseUrl: new URL(`http://127.0.0.1:${server.addr.port}/`),
            auth: { kind: "bearer", token },
            timeoutMs: 5000,
            logger: createLogger({ level: "debug", write: (l) => logs.push(l) }),
          });
          try {
            switch (operation) {
              case "heartbeat":
                await client.heartbeat("agent-1", {} as never);
                break;
              case "enroll":
                await client.enroll({} as never);
                break;
              case "renew":
                await client.renewCertificate("agent-1", { csr: "x" });
                break;
              case "unenroll":
                await client.unenroll("agent-1");
                break;
              case "health":
                await client.health();
                break;
            }
          } catch (e) {
            assert.ok(e instanceof PlatformError, `not a PlatformError: ${e}`);
            kinds.set(e.kind, (kinds.get(e.kind) ?? 0) + 1);
            assert.ok(e instanceof AgentError);
            assert.doesNotMatch(e.message, /[\r\n]/);
            const everything = JSON.stringify([
              e.message,
              e.code,
              e.detail,
              e.problem,
              e.retryAfterSeconds,
            ]);
            assertNoSecret(everything, [secret, token, ...keyLines], `${operation} error`);
            if (e.retryAfterSeconds !== undefined) {
              assert.ok(e.retryAfterSeconds >= 0 && e.retryAfterSeconds <= RETRY_AFTER_CAP_SECONDS);
            }
          }
          for (const line of logs) assertNoSecret(line, [secret, token], `${operation} log`);
        },
      ),
      { numRuns: 300 },
    );
    // The generator reaches every failure class the client has for an answer.
    for (const kind of ["http", "redirect", "invalid_response"]) {
      assert.ok((kinds.get(kind) ?? 0) > 0, `no ${kind}: ${JSON.stringify([...kinds])}`);
    }
  } finally {
    clearSecrets();
    await server.shutdown();
  }
});
