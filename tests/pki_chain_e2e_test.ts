/**
 * Certificates issued by an intermediate CA, end to end, against parts this project did not write:
 * a three-level PKI made by the `openssl` CLI (root → issuing CA → leaves) and a stock nginx that
 * verifies client certificates against the root alone (`ssl_verify_depth 2`) and serves a server
 * chain leaf + intermediate. The agent is given only the root. The dev platform signs agent
 * certificates with the openssl-made issuing CA key (`issuingCa`), so the signing CA is not ours.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { type IssuingCaOptions, startDevPlatform } from "../tasks/dev_platform/server.ts";
import {
  certificateFingerprint,
  type CliResult,
  enrollArgs,
  errorLine,
  runAgent,
  runOnce,
  tempDir,
} from "./_support/helpers.ts";
import { NGINX_BIN, nginxAvailable, type NginxMtls, startNginxMtls } from "./_support/nginx.ts";
import {
  makeOpensslPki,
  OPENSSL_BIN,
  opensslAvailable,
  type OpensslPki,
} from "./_support/openssl_pki.ts";

const NGINX_REQUIRED = (Deno.env.get("ONECONNECT_REQUIRE_NGINX") ?? "") !== "";
const HAVE_TOOLS = nginxAvailable() && opensslAvailable();
const PROXY_SECRET = "pki-chain-e2e-proxy-secret";

if (!HAVE_TOOLS && !NGINX_REQUIRED) {
  console.error(
    `\n!!! SKIPPING tests/pki_chain_e2e_test.ts: it needs nginx (${NGINX_BIN}) and openssl (${OPENSSL_BIN}).` +
      "\n!!! Install nginx-light and openssl to run it; CI (.ci/run) does and sets ONECONNECT_REQUIRE_NGINX=1.\n",
  );
}

interface StoredIdentity {
  agent_id: string;
  platform_url: string;
  certificate: string;
  intermediate_certificates?: string[];
  ca_certificates: string[];
  [field: string]: unknown;
}

function requireTools(): void {
  if (!HAVE_TOOLS) {
    throw new Error(
      `ONECONNECT_REQUIRE_NGINX is set but nginx (${NGINX_BIN}) or openssl (${OPENSSL_BIN}) is missing`,
    );
  }
}

async function readIdentity(stateDir: string): Promise<StoredIdentity> {
  return JSON.parse(await Deno.readTextFile(join(stateDir, "identity.json")));
}

function enroll(stateDir: string, url: URL, caFile: string, token: string): Promise<CliResult> {
  return runAgent(["--state-dir", stateDir, ...enrollArgs({ url, caFile }, "--token-file", "-")], {
    stdin: token,
  });
}

/** nginx in front of `platform` with the openssl server chain, trusting clients to the root only. */
function rootOnlyEdge(platform: { url: URL }, pki: OpensslPki): Promise<NginxMtls> {
  return startNginxMtls({
    upstream: platform.url,
    caPem: pki.root.certPem,
    serverCertPem: pki.serverChain.certPem,
    serverKeyPem: pki.serverChain.keyPem,
    proxySecret: PROXY_SECRET,
  });
}

async function withPki<T>(fn: (pki: OpensslPki) => Promise<T>): Promise<T> {
  await using dir = await tempDir("oneconnect-pki-");
  return await fn(await makeOpensslPki(dir.path));
}

Deno.test({
  name:
    "an openssl intermediate CA: enroll, run (mtls and bearer), renew and unenroll with only the root",
  ignore: !HAVE_TOOLS && !NGINX_REQUIRED,
  fn: () =>
    withPki(async (pki) => {
      requireTools();
      await using platform = await startDevPlatform({
        quiet: true,
        proxySecret: PROXY_SECRET,
        // The platform itself also serves leaf + intermediate (bearer runs go to it directly).
        serverCertificate: pki.serverChain,
        issuingCa: {
          certPem: pki.issuing.certPem,
          keyPem: pki.issuing.keyPem,
          rootPems: [pki.root.certPem],
        },
      });
      // Client certificates are verified against the root alone: the agent must send the chain.
      await using nginx = await rootOnlyEdge(platform, pki);
      await using state = await tempDir("oneconnect-pki-state-");
      const diagnose = async (r: CliResult) => `${r.stderr}\n${await nginx.errorLog()}`;

      // The preflight's TLS check accepts the server's leaf + intermediate with only the root.
      const check = await runAgent([
        "--state-dir",
        state.path,
        "enroll",
        "--check",
        "--url",
        nginx.url.href,
        "--ca-file",
        pki.rootFile,
      ]);
      assert.equal(check.code, 0, `${check.stdout}\n${await diagnose(check)}`);
      assert.match(check.stdout, /verified against/);

      const enrolled = await enroll(
        state.path,
        nginx.url,
        pki.rootFile,
        platform.mintEnrollmentToken(),
      );
      assert.equal(enrolled.code, 0, await diagnose(enrolled));
      const identity = await readIdentity(state.path);
      assert.equal(new x509.X509Certificate(identity.certificate).issuer, "CN=Test Issuing CA");
      assert.deepEqual(identity.intermediate_certificates, [pki.issuing.certPem]);
      assert.deepEqual(identity.ca_certificates, [pki.root.certPem]);
      const agentId = identity.agent_id;
      const mtlsOnce = () => runOnce(state.path, "mtls");

      const first = await mtlsOnce();
      assert.equal(first.code, 0, await diagnose(first));
      const beats = () => platform.heartbeats(agentId);
      assert.equal(beats().length, 1);
      assert.equal(beats()[0]!.auth, "mtls");
      assert.equal(
        beats()[0]!.client_cert_fingerprint,
        await certificateFingerprint(identity.certificate),
      );

      // Bearer, straight to the platform, which also sends leaf + intermediate.
      await using direct = await tempDir("oneconnect-pki-direct-");
      await Deno.chmod(direct.path, 0o700);
      await Deno.writeTextFile(
        join(direct.path, "identity.json"),
        JSON.stringify({ ...identity, platform_url: platform.url.href }),
        { mode: 0o600 },
      );
      const bearer = await runAgent([
        "--state-dir",
        direct.path,
        "run",
        "--once",
        "--auth",
        "bearer",
      ]);
      assert.equal(bearer.code, 0, bearer.stderr);
      assert.equal(beats().length, 2);
      assert.equal(beats()[1]!.auth, "bearer");

      const renewed = await runAgent(["--state-dir", state.path, "renew", "--auth", "mtls"]);
      assert.equal(renewed.code, 0, await diagnose(renewed));
      const after = await readIdentity(state.path);
      assert.notEqual(after.certificate, identity.certificate);
      assert.equal(new x509.X509Certificate(after.certificate).issuer, "CN=Test Issuing CA");
      assert.deepEqual(after.intermediate_certificates, [pki.issuing.certPem]);
      const second = await mtlsOnce();
      assert.equal(second.code, 0, await diagnose(second));
      assert.equal(beats().length, 3);
      assert.equal(
        beats()[2]!.client_cert_fingerprint,
        await certificateFingerprint(after.certificate),
      );

      const gone = await runAgent([
        "--state-dir",
        state.path,
        "unenroll",
        "--yes",
        "--auth",
        "mtls",
      ]);
      assert.equal(gone.code, 0, await diagnose(gone));
      assert.match(gone.stdout, new RegExp(`^platform: deleted agent "${agentId}"\n`));
      assert.equal(platform.agents().find((a) => a.agent_id === agentId)?.deleted, true);
      assert.deepEqual(platform.contractViolations, []);
    }),
});

Deno.test({
  name:
    "an issuing CA sent in ca_certificates, not the chain, is still presented to a root-only nginx",
  ignore: !HAVE_TOOLS && !NGINX_REQUIRED,
  fn: () =>
    withPki(async (pki) => {
      requireTools();
      await using platform = await startDevPlatform({
        quiet: true,
        proxySecret: PROXY_SECRET,
        serverCertificate: pki.serverChain,
        issuingCa: {
          ...pki.issuing,
          chainPems: [],
          rootPems: [pki.issuing.certPem, pki.root.certPem],
        },
      });
      await using nginx = await rootOnlyEdge(platform, pki);
      await using state = await tempDir("oneconnect-pki-state-");
      const enrolled = await enroll(
        state.path,
        nginx.url,
        pki.rootFile,
        platform.mintEnrollmentToken(),
      );
      assert.equal(enrolled.code, 0, enrolled.stderr);
      const identity = await readIdentity(state.path);
      assert.equal(identity.certificate.match(/BEGIN CERTIFICATE/g)?.length, 1);
      assert.deepEqual(identity.intermediate_certificates, [pki.issuing.certPem]);
      const once = await runOnce(state.path, "mtls");
      assert.equal(once.code, 0, `${once.stderr}\n${await nginx.errorLog()}`);
      assert.equal(platform.heartbeats(identity.agent_id)[0]?.auth, "mtls");
    }),
});

Deno.test({
  name: "enroll refuses each broken openssl chain with one line and stores nothing",
  ignore: !HAVE_TOOLS && !NGINX_REQUIRED,
  fn: () =>
    withPki(async (pki) => {
      requireTools();
      const roots = [pki.root.certPem];
      const variants: Array<[string, IssuingCaOptions, RegExp]> = [
        [
          "wrong order",
          { ...pki.issuing, rootPems: roots, leafLast: true },
          /certificate chain is in the wrong order: this agent's certificate is entry 2, it must come first/,
        ],
        [
          "missing intermediate",
          { ...pki.issuing, rootPems: roots, chainPems: [] },
          /its issuer "CN=Test Issuing CA" is not in the chain: a missing intermediate CA/,
        ],
        [
          "intermediate not a CA",
          { ...pki.notCa, rootPems: roots },
          /intermediate "CN=Test Not A CA" is not a CA \(no basicConstraints CA:true\)/,
        ],
        [
          "expired intermediate",
          { ...pki.expired, rootPems: roots },
          /intermediate "CN=Test Expired CA" expired at 2021-01-01T00:00:00\.000Z, \d+ minutes ago/,
        ],
        [
          "path length exceeded",
          {
            ...pki.tooDeep,
            rootPems: roots,
            chainPems: [pki.tooDeep.certPem, pki.issuing.certPem],
          },
          /path length exceeded: intermediate "CN=Test Issuing CA" allows 0 intermediate CA\(s\) below it/,
        ],
      ];
      for (const [label, issuingCa, why] of variants) {
        await using platform = await startDevPlatform({
          quiet: true,
          serverCertificate: pki.serverChain,
          issuingCa,
        });
        await using dir = await tempDir("oneconnect-pki-broken-");
        const stateDir = join(dir.path, "state");
        const result = await enroll(
          stateDir,
          platform.url,
          pki.rootFile,
          platform.mintEnrollmentToken(),
        );
        assert.equal(result.code, 4, `${label}: ${result.stderr}`);
        const line = errorLine(result);
        assert.match(line, /^error: Cannot enroll: refusing the platform's answer: /, label);
        assert.match(line, why, label);
        assert.match(line, /; nothing was stored; the enrollment token is probably used up/, label);
        assert.equal(result.stdout, "", label);
        // The platform did issue (the token is spent), but the agent kept nothing.
        assert.equal(platform.agents().length, 1, label);
        assert.equal(await Deno.lstat(stateDir).then(() => true, () => false), false, label);
      }
    }),
});
