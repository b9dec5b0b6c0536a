/**
 * Certificate renewal: when to renew, one renewal (new key on the host, CSR, verified answer,
 * atomic identity replacement), and the scheduler the heartbeat loop calls between beats. X.509
 * code is loaded only when a renewal actually happens.
 */
import type { ClockOffset } from "../wire/clock_offset.ts";
import {
  type BackoffPolicy,
  DEFAULT_BACKOFF,
  failureDelay,
  withJitter,
} from "../platform/backoff.ts";
import type { RenewRequest, RenewResponse } from "../wire/contract.ts";
import { errorMessage, PlatformError } from "../errors.ts";
import type { Identity } from "../state/identity_store.ts";
import { type Logger, registerSecret } from "../log.ts";
import { StatusRecorder, type StatusSink } from "../state/status_recorder.ts";
import { isoTime } from "../iso_time.ts";

/** Fraction of the certificate lifetime after which it is renewed. */
const RENEWAL_LIFETIME_FRACTION = 2 / 3;
/** Jitter around the renewal point, so a fleet enrolled together does not renew together. */
const RENEWAL_JITTER_FRACTION = 0.1;
/** Renew at once when less than this remains (see {@linkcode renewalDueAt} for short lifetimes). */
const RENEWAL_URGENT_SECONDS = 86_400;
/** Days before certificate expiry from which `run` warns and `status` flags it. */
export const CERTIFICATE_WARNING_DAYS = 7;

/** How near a certificate expiring at `notAfter` (ISO 8601) is to expiry at `nowMs`. */
export function certificateExpiry(
  notAfter: string,
  nowMs: number,
): { kind: "expired" } | { kind: "soon"; leftMs: number } | { kind: "valid" } {
  const leftMs = Date.parse(notAfter) - nowMs;
  if (leftMs <= 0) return { kind: "expired" };
  return leftMs < CERTIFICATE_WARNING_DAYS * 86_400_000
    ? { kind: "soon", leftMs }
    : { kind: "valid" };
}

/**
 * When a certificate valid from `notBeforeMs` to `notAfterMs` is due for renewal (wall-clock ms):
 * two thirds into its lifetime ±10 %, and no later than 24 h before it expires. For a certificate
 * living less than four days the urgent window shrinks to a quarter of its lifetime, so that a
 * short-lived certificate is not renewed again the moment it is issued.
 */
export function renewalDueAt(
  notBeforeMs: number,
  notAfterMs: number,
  random: () => number,
): number {
  const lifetimeMs = Math.max(0, notAfterMs - notBeforeMs);
  const planned = notBeforeMs +
    withJitter(lifetimeMs * RENEWAL_LIFETIME_FRACTION, random, RENEWAL_JITTER_FRACTION);
  const urgentMs = Math.min(RENEWAL_URGENT_SECONDS * 1000, lifetimeMs / 4);
  return Math.min(planned, notAfterMs - urgentMs);
}

/** The platform call a renewal makes (the PlatformClient, or a fake in unit tests). */
export interface RenewalClient {
  renewCertificate(
    agentId: string,
    body: RenewRequest,
    signal?: AbortSignal,
  ): Promise<RenewResponse>;
  /** `GET api/v1/health`: the request that proves a renewed identity's client still works. */
  health?(signal?: AbortSignal): Promise<unknown>;
}

/**
 * One request through the client of a renewed identity before it is stored: a renewal whose CA
 * set no longer validates the platform's server must change nothing.
 */
async function proveRenewedClient(client: RenewalClient, signal?: AbortSignal) {
  try {
    await client.health?.(signal);
  } catch (e) {
    if (!(e instanceof PlatformError)) throw e;
    throw new PlatformError(
      `the renewed identity cannot reach the platform (GET api/v1/health: ${e.message}); the current certificate is kept`,
      e,
      { cause: e },
    );
  }
}

/** Options of {@linkcode renewIdentity}. */
export interface RenewIdentityOptions {
  /** Wall clock, ms, for the validity check. */
  now: () => number;
  signal?: AbortSignal;
  /** The platform's clock as last measured, for the hint of a validity error. */
  clock?: ClockOffset;
}

/**
 * Renews `identity` once: a new ECDSA P-256 key made here, a CSR for it, the platform's answer
 * verified like at enrollment (our key, valid now, a sound path to one of its CAs). Returns the new
 * identity without storing it. Rejects with the client's {@linkcode PlatformError}, or one of kind
 * `invalid_response` when the answer fails a check.
 */
export async function renewIdentity(
  identity: Identity,
  client: RenewalClient,
  options: RenewIdentityOptions,
): Promise<Identity> {
  const certs = await import("../trust/certificates.ts");
  const keys = await certs.generateAgentKeyPair();
  const privateKeyPem = await certs.exportPrivateKeyPem(keys.privateKey);
  registerSecret(privateKeyPem);
  // Keep the subject the platform issued at enrollment (the host name); the agent id is the SAN.
  const current = certs.parseCertificate(identity.certificate);
  const commonName = typeof current === "string"
    ? identity.agent_id
    : current.subjectName.getField("CN")[0] ?? identity.agent_id;
  const csr = await certs.createCsr(keys, commonName);

  const answer = await client.renewCertificate(identity.agent_id, { csr }, options.signal);
  registerSecret(answer.service_account_token);
  let validity: Awaited<ReturnType<typeof certs.verifyIssuedCertificate>>;
  try {
    validity = await certs.verifyIssuedCertificate({
      certificatePem: answer.certificate,
      caCertificatePems: answer.ca_certificates,
      publicKey: keys.publicKey,
      now: options.now(),
      clock: options.clock?.latest,
    });
  } catch (e) {
    if (!(e instanceof certs.CertificateCheckError)) throw e;
    throw new PlatformError(
      `refusing the platform's answer: ${e.message}; the current certificate is kept`,
      { kind: "invalid_response", httpStatus: 200 },
      { cause: e },
    );
  }
  return {
    ...identity,
    certificate: validity.leafPem,
    intermediate_certificates: validity.intermediatePems,
    private_key: privateKeyPem,
    ca_certificates: answer.ca_certificates,
    service_account_token: answer.service_account_token ?? identity.service_account_token,
    certificate_not_before: isoTime(validity.notBefore.getTime()),
    certificate_not_after: isoTime(validity.notAfter.getTime()),
  };
}

/** Options of {@linkcode renewAndStore}. */
export interface RenewAndStoreOptions<C extends RenewalClient & { close(): void }> {
  /** Builds a client presenting the renewed identity. */
  createClient: (identity: Identity) => C;
  /** Persists the renewed identity atomically (IdentityStore). */
  store: { save(identity: Identity): Promise<void> };
  /** Wall clock, ms, for the validity check. */
  now: () => number;
  signal: AbortSignal;
  /** The platform's clock as last measured, for the hint of a validity error. */
  clock?: ClockOffset;
  /** One renewal; defaults to {@linkcode renewIdentity}. */
  renew?: (identity: Identity, client: C, signal: AbortSignal) => Promise<Identity>;
}

/**
 * The one renewal path of `renew` and the {@linkcode RenewalScheduler}: renews `identity` through
 * `client`, builds and proves (see {@linkcode proveRenewedClient}) a client for the new identity,
 * then stores it. Returns the new identity and its client, which the caller owns; any failure
 * leaves the old identity stored, closes the new client and is thrown.
 */
export async function renewAndStore<C extends RenewalClient & { close(): void }>(
  identity: Identity,
  client: C,
  options: RenewAndStoreOptions<C>,
): Promise<{ identity: Identity; client: C }> {
  const renew = options.renew ??
    ((old: Identity, c: C, signal: AbortSignal) =>
      renewIdentity(old, c, { now: options.now, signal, clock: options.clock }));
  const renewed = await renew(identity, client, options.signal);
  // Built and proven before storing: a client that cannot be made or cannot reach the platform
  // must leave the old identity in force.
  const next = options.createClient(renewed);
  try {
    await proveRenewedClient(next, options.signal);
    await options.store.save(renewed);
  } catch (e) {
    next.close();
    throw e;
  }
  return { identity: renewed, client: next };
}

/** Options of {@linkcode RenewalScheduler}. */
export interface RenewalSchedulerOptions<C extends RenewalClient & { close(): void }> {
  identity: Identity;
  /** The client presenting `identity`; the scheduler owns it from now on. */
  client: C;
  /** Builds a client presenting a renewed identity. */
  createClient: (identity: Identity) => C;
  /** Persists a renewed identity atomically (IdentityStore). */
  store: { save(identity: Identity): Promise<void> };
  /**
   * `status.json`, whose `renewal` and `certificate_expires_at` are kept current (through the
   * heartbeat loop's recorder when it is one).
   */
  status?: StatusSink;
  logger: Logger;
  /** Wall clock, ms (certificate validity is wall-clock time). */
  now?: () => number;
  /** The platform's clock as last measured, for the hint of a validity error. */
  clock?: ClockOffset;
  random?: () => number;
  backoff?: BackoffPolicy;
  /** One renewal; defaults to {@linkcode renewIdentity}. */
  renew?: (identity: Identity, client: C, signal: AbortSignal) => Promise<Identity>;
}

/**
 * Decides when the certificate is renewed and does it between heartbeats: the loop calls
 * {@linkcode runIfDue} before each beat and sends with {@linkcode client}, which is replaced by one
 * presenting the new certificate once the new identity is stored. A failure never throws: it is
 * recorded and retried with the heartbeat backoff while the old identity stays in use.
 */
export class RenewalScheduler<C extends RenewalClient & { close(): void }> implements Disposable {
  readonly #options: RenewalSchedulerOptions<C>;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #backoff: BackoffPolicy;
  readonly #status: StatusRecorder | undefined;
  #identity: Identity;
  #client: C;
  #nextAt: number;
  #failures = 0;

  constructor(options: RenewalSchedulerOptions<C>) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#status = options.status && StatusRecorder.over(options.status, options.logger);
    this.#identity = options.identity;
    this.#client = options.client;
    this.#nextAt = this.#plan(options.identity);
    const previous = this.#status?.current.renewal;
    this.#status?.renewal({
      next_at: isoTime(this.#nextAt),
      last_error: previous?.last_error ?? null,
      last_renewed_at: previous?.last_renewed_at ?? null,
    });
  }

  /** The identity in use (the renewed one after a renewal). */
  get identity(): Identity {
    return this.#identity;
  }

  /** The client presenting {@linkcode identity}. */
  get client(): C {
    return this.#client;
  }

  /** Failed renewals since the last success. */
  get failures(): number {
    return this.#failures;
  }

  /** When the next renewal (or retry) is due, wall-clock ms. */
  nextAt(): number {
    return this.#nextAt;
  }

  /**
   * Renews when due. Returns the new identity and client after a renewal, else `null` (not due,
   * failed, or aborted by `signal`). Never throws.
   */
  async runIfDue(signal: AbortSignal): Promise<{ identity: Identity; client: C } | null> {
    if (signal.aborted || this.#now() < this.#nextAt) return null;
    const { logger } = this.#options;
    const old = this.#identity;
    logger.info("Renewing the agent certificate", {
      certificate_expires_at: old.certificate_not_after,
      attempt: this.#failures + 1,
    });
    let renewed: Identity;
    let client: C;
    try {
      const { createClient, store, clock, renew } = this.#options;
      ({ identity: renewed, client } = await renewAndStore(old, this.#client, {
        createClient,
        store,
        now: this.#now,
        signal,
        clock,
        renew,
      }));
    } catch (error) {
      if (signal.aborted) return null;
      await this.#failed(error);
      return null;
    }
    this.#client.close();
    this.#client = client;
    this.#identity = renewed;
    this.#failures = 0;
    this.#nextAt = this.#plan(renewed);
    if (this.#status) this.#status.current.certificate_expires_at = renewed.certificate_not_after;
    this.#status?.renewal({
      next_at: isoTime(this.#nextAt),
      last_error: null,
      last_renewed_at: isoTime(this.#now()),
    });
    await this.#status?.save();
    logger.info("Certificate renewed", {
      certificate_expires_at: renewed.certificate_not_after,
      next_renewal_at: isoTime(this.#nextAt),
      service_account_token_rotated: renewed.service_account_token !== old.service_account_token,
    });
    return { identity: renewed, client };
  }

  /** Closes the current client. */
  [Symbol.dispose](): void {
    this.#client.close();
  }

  #plan(identity: Identity): number {
    return renewalDueAt(
      Date.parse(identity.certificate_not_before),
      Date.parse(identity.certificate_not_after),
      this.#random,
    );
  }

  async #failed(error: unknown): Promise<void> {
    this.#failures++;
    const retryAfter = error instanceof PlatformError ? error.retryAfterSeconds : undefined;
    // Up to +10 % above the floor; renewals only run between heartbeats, which spread the fleet.
    const delaySeconds = failureDelay(
      this.#failures,
      this.#random,
      retryAfter,
      () => 0.1 * retryAfter! * this.#random(),
      this.#backoff,
    );
    this.#nextAt = this.#now() + Math.round(delaySeconds * 1000);
    const message = `Cannot renew certificate: ${errorMessage(error)}`;
    const expiresAt = this.#identity.certificate_not_after;
    this.#options.logger.warn(
      Date.parse(expiresAt) > this.#now()
        ? `${message}; keeping the current certificate (valid until ${expiresAt})`
        : `${message}; the current certificate expired at ${expiresAt}`,
      { failures: this.#failures, retry_in_seconds: Math.round(delaySeconds * 10) / 10 },
    );
    this.#status?.renewal({
      next_at: isoTime(this.#nextAt),
      last_error: message,
      last_renewed_at: this.#status?.current.renewal?.last_renewed_at ?? null,
    });
    await this.#status?.save();
  }
}
