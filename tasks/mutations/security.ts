/**
 * One-line regressions of the security promises (docs/security.md): redaction, trust, the
 * identity store, the state lock and the enrollment token. `deno task mutate` runs them; every one
 * must be killed by its covering tests before a release (docs/development.md, "Mutation checks").
 */
import type { Mutation } from "./mutation.ts";

const REDACTION_TESTS = [
  "tests/log_test.ts",
  "tests/error_report_test.ts",
  "tests/faults/fuzz_test.ts",
  "tests/faults/secrets_test.ts",
];
const TRUST_ENV_TESTS = ["tests/trust_store_test.ts", "tests/trust_env_e2e_test.ts"];
const IDENTITY_TESTS = [
  "tests/identity_store_test.ts",
  "tests/ownership_test.ts",
  "tests/faults/secrets_test.ts",
];

/** The list `deno task mutate` runs by default. */
export const mutations: Mutation[] = [
  // Redaction (src/log.ts).
  {
    promise: "registered secrets of 6+ characters are scrubbed",
    file: "src/log.ts",
    original: "if (trimmed.length >= MIN_SECRET_LENGTH) knownSecrets.add(trimmed);",
    replacement: "if (trimmed.length > 64) knownSecrets.add(trimmed);",
    tests: REDACTION_TESTS,
  },
  {
    promise: "a registered secret is replaced wherever it appears",
    file: "src/log.ts",
    original: "if (out.includes(secret)) out = out.split(secret).join(REDACTED);",
    replacement: "if (out.startsWith(secret)) out = out.replace(secret, REDACTED);",
    tests: REDACTION_TESTS,
  },
  {
    promise: "Basic authorization values are redacted",
    file: "src/log.ts",
    original: "[/\\b(Bearer|Basic)\\s+[A-Za-z0-9._~+/=:-]+/gi",
    replacement: "[/\\b(Bearer)\\s+[A-Za-z0-9._~+/=:-]+/gi",
    tests: REDACTION_TESTS,
  },
  {
    promise: "a user-only credential in a URL is redacted",
    file: "src/log.ts",
    original: "[^\\s/@:]+(?::[^\\s/@]*)?@/g,",
    replacement: "[^\\s/@:]+(?::[^\\s/@]*)@/g,",
    tests: REDACTION_TESTS,
  },
  {
    promise: "password= values are redacted",
    file: "src/log.ts",
    original: "(?:(?<![a-z_])[a-z_]*token|password|passwd|secret|private_key|api_key)",
    replacement: "(?:(?<![a-z_])[a-z_]*token|passwd|secret|private_key|api_key)",
    tests: REDACTION_TESTS,
  },
  {
    promise: "fields named like a secret are masked",
    file: "src/log.ts",
    original: "/token|authorization|password|secret|private_?key|^key$|key_pem|cookie/i",
    replacement: "/token|password|secret|private_?key|^key$|key_pem|cookie/i",
    tests: REDACTION_TESTS,
  },
  {
    promise: "an Error logged as a field is redacted",
    file: "src/log.ts",
    original: "if (value instanceof Error) return redact(value.message);",
    replacement: "if (value instanceof Error) return value.message;",
    tests: REDACTION_TESTS,
  },
  {
    promise: "every log message is redacted",
    file: "src/log.ts",
    original: "const safeMsg = redact(msg).replace(",
    replacement: "const safeMsg = msg.replace(",
    tests: REDACTION_TESTS,
  },
  // Trust (src/trust/).
  {
    promise: "SSL_CERT_FILE cannot widen trust",
    file: "src/trust/trust_store.ts",
    original: '  "SSL_CERT_FILE",\n',
    replacement: "",
    tests: TRUST_ENV_TESTS,
  },
  {
    promise: "NODE_EXTRA_CA_CERTS cannot widen trust",
    file: "src/trust/trust_store.ts",
    original: '  "NODE_EXTRA_CA_CERTS",\n',
    replacement: "",
    tests: TRUST_ENV_TESTS,
  },
  {
    promise: "a pinned identity trusts no bundled root store",
    file: "src/trust/trust_store.ts",
    original: '{ none: ",", mozilla: "mozilla", system: "system" }',
    replacement: '{ none: "mozilla", mozilla: "mozilla", system: "system" }',
    tests: TRUST_ENV_TESTS,
  },
  {
    promise: "a store built before main.ts stops the agent",
    file: "src/trust/trust_store.ts",
    original: "  if (Deno.build.standalone) return;\n",
    replacement: "  if (Deno.build.standalone || true) return;\n",
    tests: TRUST_ENV_TESTS,
  },
  {
    promise: "SSLKEYLOGFILE stops TLS",
    file: "src/trust/trust_store.ts",
    original: "if (state.keyLog !== undefined) {",
    replacement: "if (state.keyLog === null) {",
    tests: TRUST_ENV_TESTS,
  },
  {
    promise: "a later client cannot narrow the store the first one built",
    file: "src/trust/trust_store.ts",
    original: 'return have !== want && have !== "none";',
    replacement: "return false;",
    tests: [...TRUST_ENV_TESTS, "tests/platform_client_test.ts", "tests/enroll_e2e_test.ts"],
  },
  {
    promise: "--ca-pin matches only a CA certificate",
    file: "src/trust/ca_pin.ts",
    original: "described.filter((c) => c.isCa && pins.includes(c.pin))",
    replacement: "described.filter((c) => pins.includes(c.pin))",
    tests: ["tests/ca_pin_test.ts", "tests/ca_pin_e2e_test.ts"],
  },
  {
    promise: "a CA pin is exactly sha256:<64 hex digits>",
    file: "src/trust/ca_pin.ts",
    original: "const PIN_PATTERN = /^sha256:([0-9a-f]{64})$/i;",
    replacement: "const PIN_PATTERN = /^sha256:([0-9a-f]{64})/i;",
    tests: ["tests/ca_pin_test.ts", "tests/ca_pin_e2e_test.ts"],
  },
  {
    promise: "a key with a non-uncompressed embedded point is a bad key, not a mismatch",
    file: "src/trust/key_match.ts",
    original: "if (keyDer[bits.start + 1] !== 0x04) return null;",
    replacement: "",
    tests: ["tests/key_match_test.ts", "tests/identity_store_test.ts"],
  },
  {
    promise: "a ca_pin or ca_file identity trusts no root store",
    file: "src/trust/trust_source.ts",
    original: 'trust.source === "mozilla" ? "mozilla" : "none";',
    replacement: 'trust.source === "mozilla" ? "mozilla" : "system";',
    tests: ["tests/trust_source_test.ts", "tests/trust_env_e2e_test.ts"],
  },
  // Identity store (src/state/identity_store.ts).
  {
    promise: "the loaded service_account_token is scrubbed from logs",
    file: "src/state/identity_store.ts",
    original: "    registerSecret(identity.service_account_token);\n",
    replacement: "",
    tests: IDENTITY_TESTS,
  },
  {
    promise: "an identity file owned by another user is refused",
    file: "src/state/identity_store.ts",
    original: "    requireOwner(path, info, this.#ownership.uid());\n",
    replacement: "",
    tests: IDENTITY_TESTS,
  },
  {
    promise: "an https identity with no CA to pin is refused",
    file: "src/state/identity_store.ts",
    original: 'platformUrl.protocol === "https:" && identity.ca_certificates.length === 0 &&',
    replacement: 'platformUrl.protocol === "ftp:" && identity.ca_certificates.length === 0 &&',
    tests: IDENTITY_TESTS,
  },
  {
    promise: "a key that does not match the certificate is refused",
    file: "src/state/identity_store.ts",
    original: 'if (match === "mismatch") throw',
    replacement: 'if (match !== "mismatch" && match === "mismatch") throw',
    tests: IDENTITY_TESTS,
  },
  {
    promise: "a leftover enrollment.token is audited to 0600",
    file: "src/state/identity_store.ts",
    original: "[IDENTITY_FILE_NAME, STATUS_FILE_NAME, ENROLLMENT_TOKEN_FILE_NAME];",
    replacement: "[IDENTITY_FILE_NAME, STATUS_FILE_NAME];",
    tests: IDENTITY_TESTS,
  },
  {
    promise: "stale identity temp files (key and token inside) are deleted",
    file: "src/state/identity_store.ts",
    original: "[tempFilePattern(IDENTITY_FILE_NAME), tempFilePattern(STATUS_FILE_NAME)]",
    replacement: "[tempFilePattern(STATUS_FILE_NAME)]",
    tests: IDENTITY_TESTS,
  },
  // State lock (src/state/state_lock.ts).
  {
    promise: "a lock held by a live process is never taken",
    file: "src/state/state_lock.ts",
    original: "if (!(await file.tryLock(true))) throw",
    replacement: "if (!(await file.tryLock(true)) && false) throw",
    tests: ["tests/state_lock_test.ts"],
  },
  {
    promise: "a fresh lock without its record yet is not stolen",
    file: "src/state/state_lock.ts",
    original: "if (record === null && age < FRESH_LOCK_MS) throw busy(null);",
    replacement: "if (record === null && age < 0) throw busy(null);",
    tests: ["tests/state_lock_test.ts"],
  },
  {
    promise: "a lock file owned by another user is refused",
    file: "src/state/state_lock.ts",
    original:
      '  requireOwner(path, info, options.uid ?? (Deno.build.os === "windows" ? null : Deno.uid()));\n',
    replacement: "",
    tests: ["tests/state_lock_test.ts"],
  },
  {
    promise: "the lock file is created owner-only",
    file: "src/state/state_lock.ts",
    original: "createNew: true, mode: 0o600 });",
    replacement: "createNew: true, mode: 0o644 });",
    tests: ["tests/state_lock_test.ts"],
  },
  // Enrollment token (src/enrollment/enrollment_token.ts).
  {
    promise: "the enrollment token is scrubbed from logs and errors",
    file: "src/enrollment/enrollment_token.ts",
    original: "  registerSecret(source.token);\n",
    replacement: "",
    tests: ["tests/enrollment_token_test.ts", "tests/faults/secrets_test.ts"],
  },
  {
    promise: "a token file that is a symlink is refused as one",
    file: "src/file_system.ts",
    original: "if (problem !== null) return problem;",
    replacement: 'if (problem === "other") return problem;',
    tests: ["tests/enrollment_token_test.ts"],
  },
  {
    promise: "a token file over 64 KiB is refused",
    file: "src/enrollment/enrollment_token.ts",
    original: "const MAX_TOKEN_BYTES = 64 * 1024;",
    replacement: "const MAX_TOKEN_BYTES = 64 * 1024 * 1024;",
    tests: ["tests/enrollment_token_test.ts"],
  },
  {
    promise: "a token on stdin over 64 KiB is refused",
    file: "src/enrollment/enrollment_token.ts",
    original: "readCapped(stream, MAX_TOKEN_BYTES)",
    replacement: "readCapped(stream, MAX_TOKEN_BYTES * 1024)",
    tests: ["tests/enrollment_token_test.ts"],
  },
  // Durable writes (src/file_system.ts): temp file, fsync, rename, fsync of the directory.
  {
    promise: "a durable write fsyncs the temp file before the rename",
    file: "src/file_system.ts",
    original: "      file.syncSync();",
    replacement: "      // file.syncSync();",
    tests: ["tests/file_system_durability_test.ts"],
  },
  {
    promise: "a durable write fsyncs the directory after the rename",
    file: "src/file_system.ts",
    original: "  handle.syncSync();",
    replacement: "  // handle.syncSync();",
    tests: ["tests/file_system_durability_test.ts"],
  },
];
