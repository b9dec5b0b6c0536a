import assert from "node:assert/strict";
import {
  clearSecrets,
  createLogger,
  type LogFormat,
  redact,
  redactValue,
  registerSecret,
} from "../src/log.ts";
import { clean, httpError } from "../src/platform/responses.ts";
import { threadCpuMs } from "./_support/helpers.ts";

const TOKEN = "oc_enroll_7f3a9c1e2b4d6f8091a2b3c4";
const SA_TOKEN = "sat_9d8c7b6a5f4e3d2c1b0a99887766";
const KEY_PEM =
  "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----";

function capture(format: LogFormat) {
  const lines: string[] = [];
  const logger = createLogger({
    level: "debug",
    format,
    write: (l) => lines.push(l),
    now: () => new Date(0),
  });
  return { logger, lines };
}

Deno.test("redaction removes every secret from messages, fields and errors in both formats", () => {
  clearSecrets();
  registerSecret(TOKEN);
  registerSecret(SA_TOKEN);
  for (const format of ["text", "json"] as const) {
    const { logger, lines } = capture(format);
    logger.debug(`token is ${TOKEN}`);
    logger.info("request", { headers: { Authorization: `Bearer ${SA_TOKEN}` } });
    logger.warn("nested", { deep: { list: [{ note: `saw ${SA_TOKEN}` }] } });
    logger.error("failed", { error: new Error(`bad key ${KEY_PEM}`) });
    logger.info("fields", { enrollment_token: "short1", private_key: KEY_PEM, password: "pw" });
    logger.info(`header authorization: Bearer abc.def.ghi and key ${KEY_PEM.slice(0, 60)}`);
    logger.info("proxy", { proxy: "http://user:hunter2@proxy.local:3128" });
    assert.equal(lines.length, 7);
    const all = lines.join("\n");
    for (
      const secret of [TOKEN, SA_TOKEN, "MIGHAgEAMBMGByqGSM49", "abc.def.ghi", "hunter2", "short1"]
    ) {
      assert.ok(!all.includes(secret), `${format} leaked ${secret}: ${all}`);
    }
    assert.ok(all.includes("[REDACTED"));
    for (const line of lines) assert.ok(!line.includes("\n"));
    if (format === "json") {
      for (const line of lines) {
        const obj = JSON.parse(line);
        assert.deepEqual(Object.keys(obj).slice(0, 3), ["ts", "level", "msg"]);
      }
    }
  }
  clearSecrets();
});

Deno.test("redact scrubs secret-shaped values even when never registered", () => {
  clearSecrets();
  assert.equal(redact("Authorization: Bearer xyz123"), "Authorization: [REDACTED]");
  assert.equal(redact('{"service_account_token":"abc"}'), '{"service_account_token":"[REDACTED]"}');
  assert.equal(redact("token=abc&x=1"), "token=[REDACTED]&x=1");
  assert.match(redact(KEY_PEM.slice(0, 50)), /^\[REDACTED PRIVATE KEY\]$/);
  assert.equal(redact("GET https://a:b@host/x"), "GET https://[REDACTED]@host/x");
  // A token as the user part alone (proxies, git-style URLs) is a credential too.
  assert.equal(redact("GET https://s3cr3tT0ken@host/x"), "GET https://[REDACTED]@host/x");
  assert.equal(redact("proxy http://s3cr3tT0ken@proxy:3128"), "proxy http://[REDACTED]@proxy:3128");
  assert.equal(redact("plain message"), "plain message");
});

Deno.test("a bare Bearer value is redacted in a message, an error detail and a field", () => {
  clearSecrets();
  // Never registered and never preceded by "Authorization": only the Bearer rule can catch it.
  const bare = "eyJhbGciOiJFUzI1NiJ9.cGF5bG9hZA.c2ln-_x";
  assert.equal(redact(`sent Bearer ${bare} twice`), "sent Bearer [REDACTED] twice");
  assert.equal(redact(`bearer\t${bare}`), "bearer [REDACTED]");
  for (const format of ["text", "json"] as const) {
    const { logger, lines } = capture(format);
    logger.warn(`platform refused Bearer ${bare}`);
    logger.error("heartbeat failed", {
      error: new Error(`401: credential Bearer ${bare} unknown`),
    });
    logger.info("problem", { problem: { hint: `retry with Bearer ${bare}` } });
    assert.equal(lines.length, 3);
    for (const line of lines) {
      assert.ok(!line.includes(bare), `${format} leaked the bare bearer: ${line}`);
      assert.match(line, /Bearer \[REDACTED\]/);
    }
  }
});

Deno.test("a bare Basic credential (a proxy's user:password) is redacted in a message and an error", () => {
  clearSecrets();
  // Never registered and never preceded by "Authorization": only the Basic rule can catch it.
  const bare = btoa("proxyuser:s3cr3t-proxy-pass");
  assert.equal(redact(`proxy refused Basic ${bare}`), "proxy refused Basic [REDACTED]");
  const { logger, lines } = capture("json");
  logger.error("proxy failed", { error: new Error(`407 for basic ${bare}`) });
  assert.ok(!lines[0]!.includes(bare), `leaked the Basic credential: ${lines[0]}`);
});

Deno.test("redact scrubs the value of every secret-named key (password, passwd, secret, api_key, private_key)", () => {
  clearSecrets();
  for (const key of ["password", "passwd", "client_secret", "api_key", "private_key", "x_token"]) {
    assert.equal(
      redact(`proxy ${key}=v4lu3-of-${key} rejected`),
      `proxy ${key}=[REDACTED] rejected`,
    );
    assert.equal(redact(`{"${key}": "v4lu3"}`), `{"${key}": "[REDACTED]"}`);
  }
});

Deno.test("redactValue masks an authorization field whatever its scheme (Negotiate, Digest)", () => {
  clearSecrets();
  // Only the field name can tell: no rule knows these schemes' values.
  const fields = {
    proxy_authorization: "Negotiate YIIGhgYJKoZIhvcSAQICAQBu",
    Authorization: "Digest username=u, response=6629fae49393a05397450978507c4ef1",
  };
  assert.deepEqual(redactValue(fields), {
    proxy_authorization: "[REDACTED]",
    Authorization: "[REDACTED]",
  });
});

Deno.test("redactValue masks secret-named fields but keeps structure and booleans", () => {
  assert.deepEqual(
    redactValue({ had_authorization: true, token: "x", n: 1, list: ["a"], key: "k" }),
    { had_authorization: true, token: "[REDACTED]", n: 1, list: ["a"], key: "[REDACTED]" },
  );
});

Deno.test("log level threshold drops lower levels", () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "warn", write: (l) => lines.push(l) });
  logger.debug("d");
  logger.info("i");
  logger.warn("w");
  logger.error("e");
  assert.equal(lines.length, 2);
  assert.ok(logger.enabled("error") && !logger.enabled("info"));
});

Deno.test("text format puts one event per line with quoted values", () => {
  const { logger, lines } = capture("text");
  logger.info("heartbeat failed", { status: 503, reason: "two words", id: "a1" });
  assert.equal(
    lines[0],
    '1970-01-01T00:00:00.000Z INFO  heartbeat failed status=503 reason="two words" id=a1',
  );
});

/** Texts that made a backtracking pattern retry from every character (30 s for 60,000). */
function hostileTexts(size: number): Record<string, string> {
  const fill = (unit: string) => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
  return {
    "one long word": fill("a"),
    "a scheme without credentials": `https://${fill("b")}`,
    "words ending in token": fill("token"),
    "a PEM header never closed": `-----BEGIN ${fill("A")}`,
    "authorization and spaces": `authorization:${fill(" ")}`,
    "Bearer after Bearer": fill("Bearer "),
    "schemes": fill("a://"),
    "user:": fill("a:"),
    "@ signs": fill("x://a@"),
  };
}

Deno.test("redact costs under 50 ms of CPU on 1 MB of hostile text", () => {
  clearSecrets();
  registerSecret(TOKEN);
  redact("warm up https://a:b@c token=x Bearer y");
  // 16 KB first: the quadratic patterns fail fast there instead of burning hours on 1 MB.
  for (const size of [16 * 1024, 1024 * 1024]) {
    for (const [what, text] of Object.entries(hostileTexts(size))) {
      let out = "";
      const ms = threadCpuMs(() => out = redact(text));
      assert.ok(ms < 50, `${what} (${size} chars) took ${ms.toFixed(1)} ms`);
      // redact looks at 64 KB at most; replacements may be longer than what they replace
      // ("Bearer x" → "Bearer [REDACTED]").
      assert.ok(out.length <= 3 * 64 * 1024, `${what}: output of ${out.length} chars`);
    }
  }
  clearSecrets();
});

Deno.test("a 1 MB hostile problem detail, header or page title costs under 50 ms", () => {
  redact("warm up");
  // 16 KB first: the quadratic patterns fail fast there instead of burning hours on 1 MB.
  for (const size of [16 * 1024, 1024 * 1024]) {
    const huge = "token".repeat(size / 5);
    const answers = [
      new Response(JSON.stringify({ title: huge, detail: huge, code: huge, extra: huge }), {
        status: 400,
        headers: { "content-type": "application/problem+json", "retry-after": huge },
      }),
      new Response(`<html><head><title>${huge}`, {
        status: 502,
        headers: { "content-type": `text/html; x=${huge}` },
      }),
      new Response(`${"<title".repeat(700)}>${huge}`, {
        status: 502,
        headers: { "content-type": "text/html" },
      }),
      new Response(huge, { status: 503, headers: { "content-type": huge, "retry-after": huge } }),
    ];
    for (const response of answers) {
      const bytes = new TextEncoder().encode(huge);
      let message = "";
      const ms = threadCpuMs(() => message = httpError(response, bytes, 0, false).message);
      assert.ok(ms < 50, `${response.status} (${size} chars) took ${ms.toFixed(1)} ms`);
      assert.ok(message.length < 1000, message.slice(0, 200));
    }
    const ms = threadCpuMs(() => clean(`detail ${huge}`));
    assert.ok(ms < 50, `clean (${size} chars) took ${ms.toFixed(1)} ms`);
  }
});

Deno.test("redact cuts an over-long text before a secret that spans the cut, never keeping half", () => {
  clearSecrets();
  const spaced = "my registered secret with spaces 0123456789";
  registerSecret(spaced);
  const max = 100;
  const pad = (n: number) => "x ".repeat(n / 2);
  const secrets = [
    "hunter2secretpassword",
    "s3cr3tT0kenUserOnly",
    "bearerValue0123456789",
    "tokenValue0123456789",
    spaced,
  ];
  const shapes = [
    (at: number) => `${pad(at)}proxy https://user:hunter2secretpassword@proxy:3128 then`,
    (at: number) => `${pad(at)}proxy https://s3cr3tT0kenUserOnly@proxy:3128 then`,
    (at: number) => `${pad(at)}Authorization: Bearer bearerValue0123456789 then`,
    (at: number) => `${pad(at)}service_account_token=tokenValue0123456789&then`,
    (at: number) => `${pad(at)}${spaced} then`,
  ];
  for (const shape of shapes) {
    // Every cut position across the secret and the words before it.
    for (let at = 40; at <= max; at += 2) {
      const text = shape(at) + pad(200);
      const out = redact(text, max);
      assert.ok(out.length <= max + 20, out);
      for (const secret of secrets) {
        for (let n = 6; n <= secret.length; n++) {
          assert.ok(!out.includes(secret.slice(0, n)), `half of ${secret} kept: ${out}`);
        }
      }
    }
  }
  assert.equal(redact("short text", max), "short text");
  clearSecrets();
});
