import assert from "node:assert/strict";
import { PlatformError, UsageError } from "../src/errors.ts";
import { denoFileSystem, type FileSystem } from "../src/file_system.ts";
import { enrollmentTrust, type EnrollmentTrustDeps } from "../src/enrollment/enrollment_trust.ts";
import { createLogger } from "../src/log.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { testContext } from "./_support/context_fixture.ts";

const PIN = `sha256:${"AB".repeat(32)}`;
const URL_HTTPS = new URL("https://platform.test:8443/");

function filesOf(files: Record<string, string>): FileSystem {
  return {
    ...denoFileSystem,
    readTextFile: (path) =>
      path in files
        ? Promise.resolve(files[path]!)
        : Promise.reject(new Deno.errors.NotFound("No such file or directory")),
  };
}

function setup(
  opts: { caFile?: string; env?: Record<string, string>; files?: Record<string, string> },
) {
  const logs: string[] = [];
  const { ctx } = testContext("/nonexistent/state", {
    config: { caFile: opts.caFile, timeoutSeconds: 7 },
    env: opts.env,
    logger: createLogger({ level: "debug", write: (line) => logs.push(line) }),
  });
  const asked: Array<{ url: string; pins: string[]; timeoutMs: number }> = [];
  const deps: EnrollmentTrustDeps = {
    fs: filesOf(opts.files ?? {}),
    pinnedCas: (url, pins, timeoutMs) => {
      asked.push({ url: url.href, pins, timeoutMs });
      return Promise.resolve(["PINNED-CA"]);
    },
  };
  return { ctx, deps, logs, asked };
}

Deno.test("enrollmentTrust: the --ca-file bundle, each certificate checked, and never with --ca-pin", async () => {
  const ca = await createDevCa();
  const good = setup({ caFile: "/ca.pem", files: { "/ca.pem": `${ca.certPem}\n${ca.certPem}` } });
  assert.deepEqual(await enrollmentTrust(good.ctx, undefined, good.deps, URL_HTTPS), {
    trust: { source: "ca_file" },
    cas: [ca.certPem.trim(), ca.certPem.trim()].map((p) => `${p}\n`),
  });
  assert.deepEqual(good.logs, []);
  await assert.rejects(
    enrollmentTrust(good.ctx, [PIN], good.deps, URL_HTTPS),
    (e) =>
      e instanceof UsageError &&
      e.message === "Cannot enroll: pass --ca-file or --ca-pin, not both",
  );
  const missing = setup({ caFile: "/missing.pem" });
  await assert.rejects(
    enrollmentTrust(missing.ctx, undefined, missing.deps, URL_HTTPS),
    /Cannot read CA file "\/missing.pem": No such file or directory/,
  );
  const noPem = setup({ caFile: "/ca.pem", files: { "/ca.pem": "hello" } });
  await assert.rejects(
    enrollmentTrust(noPem.ctx, undefined, noPem.deps, URL_HTTPS),
    /Invalid CA file "\/ca.pem": no PEM certificate \(-----BEGIN CERTIFICATE-----\)/,
  );
  const junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  const bad = setup({ caFile: "/ca.pem", files: { "/ca.pem": `${ca.certPem}${junk}` } });
  await assert.rejects(
    enrollmentTrust(bad.ctx, undefined, bad.deps, URL_HTTPS),
    /Invalid CA file "\/ca.pem": certificate #2 is /,
  );
});

Deno.test("enrollmentTrust: --ca-pin values are canonicalised, deduplicated and matched directly", async () => {
  const s = setup({});
  const result = await enrollmentTrust(s.ctx, [PIN, PIN.toLowerCase(), " "], s.deps, URL_HTTPS);
  const canonical = PIN.toLowerCase();
  assert.deepEqual(result, {
    trust: { source: "ca_pin", ca_pins: [canonical] },
    cas: ["PINNED-CA"],
  });
  assert.deepEqual(s.asked, [{ url: URL_HTTPS.href, pins: [canonical], timeoutMs: 7000 }]);

  await assert.rejects(
    enrollmentTrust(s.ctx, [PIN], s.deps, new URL("http://127.0.0.1:8080/")),
    /Cannot enroll: --ca-pin needs an https:\/\/ platform URL/,
  );
  const proxied = setup({ env: { HTTPS_PROXY: "http://127.0.0.1:3128" } });
  await assert.rejects(
    enrollmentTrust(proxied.ctx, [PIN], proxied.deps, URL_HTTPS),
    /--ca-pin reads the platform's certificates over a direct connection, and a proxy is configured/,
  );
  assert.deepEqual(proxied.asked, [], "nothing is read through a proxy");
  await assert.rejects(
    enrollmentTrust(s.ctx, ["sha256:nothex"], s.deps, URL_HTTPS),
    /Invalid CA pin "sha256:nothex" \(--ca-pin\)/,
  );
  const failing: EnrollmentTrustDeps = {
    ...s.deps,
    pinnedCas: () =>
      Promise.reject(new PlatformError("no presented CA matches --ca-pin", { kind: "tls" })),
  };
  await assert.rejects(
    enrollmentTrust(s.ctx, [PIN], failing, URL_HTTPS),
    (e) =>
      e instanceof PlatformError && e.message === "Cannot enroll: no presented CA matches --ca-pin",
  );
});

Deno.test("enrollmentTrust without --ca-file or --ca-pin trusts the OS store and warns once", async () => {
  const s = setup({});
  assert.deepEqual(await enrollmentTrust(s.ctx, [], s.deps, URL_HTTPS), {
    trust: { source: "system" },
    cas: undefined,
  });
  assert.equal(s.logs.length, 1);
  assert.match(s.logs[0]!, /Trusting .* for the platform's server \(no --ca-file or --ca-pin\)/);
});
