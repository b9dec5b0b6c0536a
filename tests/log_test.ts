import assert from "node:assert/strict";
import {
  clearSecrets,
  createLogger,
  type LogFormat,
  redact,
  redactValue,
  registerSecret,
} from "../src/log.ts";

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
