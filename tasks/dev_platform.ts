/**
 * `deno task dev-platform`: runs the reference dev platform (contract v1) until interrupted.
 *
 * Prints the URL, the dev CA file, the admin token and one enrollment token at start.
 */
import { Command, InvalidArgumentError } from "commander";
import { splitPemBundle } from "../src/trust/certificates.ts";
import {
  CONTRACT_VERSIONS,
  type ContractVersion,
  type IssuingCaOptions,
  startDevPlatform,
} from "./dev_platform/server.ts";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** Parses a duration such as `90`, `30s`, `2m`, `-10m`, `1h`, `30d` into seconds. */
export function parseDuration(raw: string): number {
  const m = /^(-?\d+)([smhd]?)$/.exec(raw.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration like 30s, 2m, 1h or 30d`);
  return Number(m[1]) * (UNITS[m[2] || "s"] ?? 1);
}

function positive(raw: string): number {
  const n = parseDuration(raw);
  if (n <= 0) throw new InvalidArgumentError("expected a positive duration");
  return n;
}

function port(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535) throw new InvalidArgumentError("expected a port 0..65535");
  return n;
}

function contractVersion(raw: string): ContractVersion {
  const version = CONTRACT_VERSIONS.find((v) => v === raw);
  if (version === undefined) {
    throw new InvalidArgumentError(`expected one of ${CONTRACT_VERSIONS.join(", ")}`);
  }
  return version;
}

function interval(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 10 || n > 86400) {
    throw new InvalidArgumentError("expected seconds from 10 to 86400");
  }
  return n;
}

const program = new Command("dev-platform")
  .description("Reference OneConnect platform for development, tests and the demo.")
  .option("--hostname <host>", "listen address", "127.0.0.1")
  .option("--port <port>", "listen port (0 = ephemeral)", port, 8443)
  .option("--data-dir <dir>", "keep the dev CA and state here (default: temporary, in memory)")
  .option("--insecure-http", "serve plain HTTP (loopback only)")
  .option("--cert-ttl <duration>", "agent certificate lifetime, e.g. 2m, 30d", positive)
  .option("--clock-offset <duration>", "skew the platform clock, e.g. 10m or -10m", parseDuration)
  .option("--heartbeat-interval <seconds>", "interval given to agents (10..86400)", interval)
  .option("--token-ttl <duration>", "lifetime of the printed enrollment token", positive, 3600)
  .option("--require-mtls", "heartbeat/renew/unenroll need a client certificate via the proxy")
  .option("--proxy-secret <secret>", "X-OneConnect-Proxy-Secret of the trusted TLS proxy")
  .option(
    "--issuing-ca-cert <file>",
    "issue agent certificates from this CA (PEM, optionally followed by its own intermediates)",
  )
  .option("--issuing-ca-key <file>", "PKCS#8 P-256 key of --issuing-ca-cert")
  .option("--issuing-ca-roots <file>", "root(s) answered as ca_certificates with --issuing-ca-cert")
  .option(
    "--contract <version>",
    "behave as a platform of this contract version: 1.0 (host on every heartbeat, no features) or 1.3",
    contractVersion,
    "1.3",
  )
  .option(
    "--refuse-digest-only",
    "advertise host_digest, yet answer heartbeats without host 400 (tests the agent's fallback)",
  )
  .option("--quiet", "no request log")
  .addHelpText(
    "after",
    "\nExample:\n  $ deno task dev-platform --data-dir .dev-platform --cert-ttl 2m\n",
  );

program.parse(Deno.args, { from: "user" });
const o = program.opts<{
  hostname: string;
  port: number;
  dataDir?: string;
  insecureHttp?: boolean;
  certTtl?: number;
  clockOffset?: number;
  heartbeatInterval?: number;
  tokenTtl: number;
  requireMtls?: boolean;
  proxySecret?: string;
  contract: ContractVersion;
  refuseDigestOnly?: boolean;
  quiet?: boolean;
  issuingCaCert?: string;
  issuingCaKey?: string;
  issuingCaRoots?: string;
}>();

/** `--issuing-ca-*`: all three, or none. */
async function issuingCa(): Promise<IssuingCaOptions | undefined> {
  const files = [o.issuingCaCert, o.issuingCaKey, o.issuingCaRoots];
  if (files.every((f) => f === undefined)) return undefined;
  if (files.some((f) => f === undefined)) {
    throw new Error("--issuing-ca-cert, --issuing-ca-key and --issuing-ca-roots go together");
  }
  const chainPems = splitPemBundle(await Deno.readTextFile(o.issuingCaCert!));
  const rootPems = splitPemBundle(await Deno.readTextFile(o.issuingCaRoots!));
  if (chainPems.length === 0 || rootPems.length === 0) {
    throw new Error("--issuing-ca-cert and --issuing-ca-roots must hold PEM certificates");
  }
  return {
    certPem: chainPems[0]!,
    keyPem: await Deno.readTextFile(o.issuingCaKey!),
    chainPems,
    rootPems,
  };
}

let platform;
try {
  platform = await startDevPlatform({
    hostname: o.hostname,
    port: o.port,
    dataDir: o.dataDir,
    insecureHttp: o.insecureHttp,
    certTtlSeconds: o.certTtl,
    clockOffsetSeconds: o.clockOffset,
    heartbeatIntervalSeconds: o.heartbeatInterval,
    requireMtls: o.requireMtls,
    proxySecret: o.proxySecret,
    contractVersion: o.contract,
    refuseDigestOnly: o.refuseDigestOnly,
    quiet: o.quiet,
    issuingCa: await issuingCa(),
  });
} catch (e) {
  console.error(`dev-platform: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(2);
}
const token = platform.mintEnrollmentToken({ ttlSeconds: o.tokenTtl });
console.log(
  `OneConnect dev platform (contract ${o.contract}${
    o.refuseDigestOnly ? ", refusing heartbeats without host" : ""
  }) listening on ${platform.url.href}`,
);
console.log(`  CA certificate:   ${platform.caFile}`);
console.log(`  admin token:      ${platform.adminToken}`);
console.log(`  enrollment token: ${token}  (single use, ${o.tokenTtl} s)`);
console.log(
  `  enroll an agent:  deno task agent enroll --url ${platform.url.href} --ca-file ${platform.caFile} --token-file <file holding the token>`,
);
console.log(
  `  more tokens:      curl --cacert ${platform.caFile} -X POST -H "Authorization: Bearer <admin token>" ${platform.url.href}admin/v1/enrollment-tokens`,
);
if (o.dataDir === undefined) {
  console.log("  state is in memory and the CA is temporary (use --data-dir)");
}

const stop = new Promise<void>((resolve) => {
  Deno.addSignalListener("SIGINT", resolve);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", resolve);
});
await stop;
await platform.close();
console.log("dev platform stopped");
