/**
 * The part of enrollment that talks to the platform: a new key pair and CSR, the enrollment
 * request through a client that trusts the bootstrap CAs only, and the answer verified against
 * the key before anything is stored.
 */
import { ClockOffset } from "../wire/clock_offset.ts";
import {
  CertificateCheckError,
  createCsr,
  exportPrivateKeyPem,
  generateAgentKeyPair,
  type VerifiedCertificate,
  verifyIssuedCertificate,
} from "../trust/certificates.ts";
import type { CommandContext } from "../config/context.ts";
import type { EnrollRequest, EnrollResponse } from "../wire/contract.ts";
import { PlatformError, UsageError } from "../errors.ts";
import type { Identity } from "../state/identity_store.ts";
import { type Logger, registerSecret } from "../log.ts";
import { type CommandClientOptions, commandClientOptions } from "../platform/identity_client.ts";
import type { Host } from "../wire/telemetry_wire.ts";
import { caLabelOf, rootStoreOf, type Trust } from "../trust/trust_source.ts";
import type { RootStore } from "../trust/trust_store.ts";
import { VERSION } from "../version.ts";
import {
  type EnrollClient,
  requestWithRetries,
  type RetryDeps,
  TOKEN_SPENT_HINT,
} from "./enroll_request.ts";
import type { TokenSource } from "./enrollment_token.ts";
import { isoTime } from "../iso_time.ts";

/** How the enrollment client is built: bootstrap trust only, no credential. */
export interface EnrollClientOptions extends CommandClientOptions {
  baseUrl: URL;
  /** The `--ca-file` bundle or the CAs matching `--ca-pin`; undefined = the root store alone. */
  caCertificates?: string[];
  /** How errors name `caCertificates` (see PlatformClientOptions). */
  caLabel?: string;
  /** Deno root store trusted besides `caCertificates`. */
  rootStore?: RootStore;
}

/** The seams {@linkcode obtainIdentity} uses (part of enroll's). */
export interface ObtainIdentityDeps extends RetryDeps {
  createClient: (options: EnrollClientOptions) => Promise<EnrollClient>;
  collectHost: (logger: Logger) => Promise<Host>;
  hostname: () => string | null;
}

/** What {@linkcode obtainIdentity} asks for, and with what bootstrap trust. */
export interface IdentityRequest {
  baseUrl: URL;
  token: TokenSource;
  /** The `--ca-file` bundle or the CAs matching `--ca-pin`; undefined = the root store alone. */
  bootstrapCa: string[] | undefined;
  trust: Trust;
  /** `--timeout`: give up retrying after this many seconds. */
  timeoutSeconds: number;
}

/** Makes the key pair, asks the platform, and verifies its answer; stores nothing. */
export async function obtainIdentity(
  ctx: CommandContext,
  deps: ObtainIdentityDeps,
  request: IdentityRequest,
): Promise<{ identity: Identity; features: string[] }> {
  const { logger } = ctx;
  const host = await deps.collectHost(logger);
  const keys = await newAgentKeys(logger, host.hostname ?? deps.hostname());
  logger.info("Contacting platform", { url: request.baseUrl.href });
  const body: EnrollRequest = {
    enrollment_token: request.token.token,
    csr: keys.csr,
    host,
    agent_version: VERSION,
  };
  const clock = new ClockOffset(logger);
  const response = await sendEnrollment(ctx, deps, { request, body, clock });
  registerSecret(response.service_account_token);
  const validity = await verifyAnswer({
    certificatePem: response.certificate,
    caCertificatePems: response.ca_certificates,
    publicKey: keys.pair.publicKey,
    now: deps.now(),
    clock: clock.latest,
  });
  const identity = identityOf(request, {
    response,
    validity,
    privateKeyPem: keys.privateKeyPem,
    machineId: host.machine_id,
    enrolledAtMs: deps.now(),
  });
  return { identity, features: response.features ?? [] };
}

/** A new key pair for `hostname` (its private key registered as a secret) and its CSR. */
async function newAgentKeys(logger: Logger, hostname: string | null | undefined) {
  if (!hostname) {
    throw new UsageError("Cannot enroll: cannot determine this host's name for the certificate");
  }
  logger.info("Generating key", { algorithm: "ECDSA P-256" });
  const pair = await generateAgentKeyPair();
  const privateKeyPem = await exportPrivateKeyPem(pair.privateKey);
  registerSecret(privateKeyPem);
  const csr = await createCsr(pair, hostname);
  return { pair, privateKeyPem, csr };
}

/** Sends `body` (with retries) through a client that trusts the bootstrap CAs, then closes it. */
async function sendEnrollment(
  ctx: CommandContext,
  deps: ObtainIdentityDeps,
  { request, body, clock }: { request: IdentityRequest; body: EnrollRequest; clock: ClockOffset },
): Promise<EnrollResponse> {
  const client = await deps.createClient({
    ...commandClientOptions(ctx, {
      clock,
      timeoutMs: Math.min(ctx.config.timeoutSeconds, request.timeoutSeconds) * 1000,
    }),
    baseUrl: request.baseUrl,
    caCertificates: request.bootstrapCa,
    caLabel: caLabelOf(request.trust),
    rootStore: rootStoreOf(request.trust),
  });
  try {
    // Validated by the client against the contract (EnrollResponseSchema): no second check here.
    return await requestWithRetries(
      ctx,
      { client, body, timeoutSeconds: request.timeoutSeconds },
      deps,
    );
  } finally {
    client.close();
  }
}

/** The issued certificate, checked against this host's key and the answer's CA certificates. */
async function verifyAnswer(
  check: Parameters<typeof verifyIssuedCertificate>[0],
): Promise<VerifiedCertificate> {
  try {
    return await verifyIssuedCertificate(check);
  } catch (e) {
    if (e instanceof CertificateCheckError) {
      // The platform accepted the token before its answer could be checked: say that a new token
      // needs the cause fixed first, or it is spent the same way.
      throw rejectedAnswer(
        e.message,
        " once the cause is fixed (the same answer would spend it too)",
      );
    }
    throw e;
  }
}

/** The identity to store from the platform's verified answer. */
function identityOf(request: IdentityRequest, issued: {
  response: EnrollResponse;
  validity: VerifiedCertificate;
  privateKeyPem: string;
  machineId: Identity["machine_id"];
  enrolledAtMs: number;
}): Identity {
  const { response, validity } = issued;
  return {
    version: 1,
    agent_id: response.agent_id,
    platform_url: request.baseUrl.href,
    certificate: validity.leafPem,
    intermediate_certificates: validity.intermediatePems,
    ca_certificates: response.ca_certificates,
    bootstrap_ca_certificates: request.bootstrapCa ?? [],
    private_key: issued.privateKeyPem,
    service_account_token: response.service_account_token,
    machine_id: issued.machineId,
    enrolled_at: isoTime(issued.enrolledAtMs),
    heartbeat_interval_seconds: response.heartbeat_interval_seconds ?? 60,
    certificate_not_before: isoTime(validity.notBefore.getTime()),
    certificate_not_after: isoTime(validity.notAfter.getTime()),
    trust: request.trust,
  };
}

function rejectedAnswer(why: string, hint = ""): PlatformError {
  return new PlatformError(
    `Cannot enroll: refusing the platform's answer: ${why}; ${TOKEN_SPENT_HINT}${hint}`,
    { kind: "invalid_response" },
  );
}
