/**
 * `renew`'s domain call: one renewal now, whatever the schedule, through the same path as the
 * service's scheduler ({@linkcode renewAndStore}), with the outcome recorded in `status.json`.
 */
import type { CommandContext } from "../config/context.ts";
import { CredentialRejectedError, errorMessage, PlatformError } from "../errors.ts";
import { isoTime } from "../iso_time.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import { StatusRecorder } from "../state/status_recorder.ts";
import { type RenewalStatus, StatusStore } from "../state/status_store.ts";
import { openIdentityForWriting } from "../state/writable_identity.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { ClockOffset } from "../wire/clock_offset.ts";
import { isCredentialRejection } from "../wire/contract.ts";
import { type RenewalClient, renewalDueAt, renewAndStore } from "./renewal.ts";

/** Seams of {@linkcode renewNow}. */
export interface RenewNowDeps {
  createClient: (identity: Identity, ctx: CommandContext) => RenewalClient & { close(): void };
  now: () => number;
  random: () => number;
  /** This host's machine id now, for the clone guard (null when it has none). */
  machineId: () => Promise<string | null>;
}

const defaultDeps: RenewNowDeps = {
  createClient: (identity, ctx) => clientForIdentity(identity, identityClientOptions(ctx)),
  now: Date.now,
  random: Math.random,
  machineId: async () => (await new TelemetryCollector().host()).machine_id,
};

/**
 * Renews the certificate now and returns the stored identity. Throws exit 3 when the platform no
 * longer accepts the agent (or the identity is a clone's), 4 when the renewal failed otherwise
 * (the old identity is then untouched and `status.json` records the failure).
 */
export async function renewNow(
  ctx: CommandContext,
  overrides: Partial<RenewNowDeps> = {},
): Promise<Identity> {
  const deps: RenewNowDeps = { ...defaultDeps, ...overrides };
  const { config, logger } = ctx;
  const store = new IdentityStore(config.stateDir, { logger });
  // A running service holds the lock too: two writers would each keep a token the other revoked.
  // A clone renewing would take over the original host's credential.
  await using opened = await openIdentityForWriting(store, {
    command: "renew",
    action: "Cannot renew",
    logger,
    cloneGuard: { verb: "renew the certificate", machineId: deps.machineId },
  });
  if (opened.cloned !== null) throw opened.cloned;
  const identity = opened.identity;
  const status = new StatusRecorder(
    await StatusStore.open(config.stateDir, identity.agent_id, { logger }),
    logger,
  );
  const previous = status.current.renewal;
  const saveStatus = async (renewal: RenewalStatus) => {
    status.renewal(renewal);
    await status.save();
  };

  let renewed: Identity;
  // A failure to store the proven identity is thrown as it is, with status.json untouched.
  let storing = false;
  const client = deps.createClient(identity, ctx);
  try {
    // The offset `run` measured last, for the hint of a validity error.
    const measured = status.current.clock_offset;
    const clock = new ClockOffset(
      undefined,
      measured ? { seconds: measured.seconds, measuredAt: measured.measured_at } : undefined,
    );
    const next = await renewAndStore(identity, client, {
      createClient: (id) => deps.createClient(id, ctx),
      store: {
        save: (id) => {
          storing = true;
          return store.save(id);
        },
      },
      now: deps.now,
      signal: ctx.shutdown,
      clock,
    });
    next.client.close();
    renewed = next.identity;
  } catch (error) {
    if (storing) throw error;
    const message = `Cannot renew certificate: ${errorMessage(error)}`;
    await saveStatus({
      next_at: previous?.next_at ?? null,
      last_error: message,
      last_renewed_at: previous?.last_renewed_at ?? null,
    });
    if (!(error instanceof PlatformError)) throw error;
    if (isCredentialRejection(error)) {
      throw new CredentialRejectedError(
        `${message}; the platform no longer accepts this agent: re-enroll with "oneconnect-agent enroll --force"`,
        { cause: error },
      );
    }
    throw new PlatformError(message, error, { cause: error });
  } finally {
    client.close();
  }
  status.current.certificate_expires_at = renewed.certificate_not_after;
  await saveStatus({
    next_at: isoTime(
      renewalDueAt(
        Date.parse(renewed.certificate_not_before),
        Date.parse(renewed.certificate_not_after),
        deps.random,
      ),
    ),
    last_error: null,
    last_renewed_at: isoTime(deps.now()),
  });
  logger.info("Certificate renewed", {
    agent_id: renewed.agent_id,
    certificate_expires_at: renewed.certificate_not_after,
  });
  return renewed;
}
