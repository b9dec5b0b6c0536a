/** `oneconnect-agent renew`: one certificate renewal now, whatever the schedule. */
import type { CommandContext } from "../config/context.ts";
import {
  proveRenewedClient,
  type RenewalClient,
  renewalDueAt,
  renewIdentity,
} from "../enrollment/renewal.ts";
import { CredentialRejectedError, errorMessage, PlatformError } from "../errors.ts";
import { ClockOffset } from "../wire/clock_offset.ts";
import { isCredentialRejection } from "../wire/contract.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { cloneRefusal } from "../state/clone_guard.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import { acquireStateLock } from "../state/state_lock.ts";
import { StatusRecorder } from "../state/status_recorder.ts";
import type { RenewalStatus } from "../state/status_store.ts";
import { StatusStore } from "../state/status_store.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { isoTime } from "../iso_time.ts";

/** Seams of {@linkcode renewCommand}. */
export interface RenewCommandDeps {
  createClient: (identity: Identity, ctx: CommandContext) => RenewalClient & { close(): void };
  now: () => number;
  random: () => number;
  /** This host's machine id now, for the clone guard (null when it has none). */
  machineId: () => Promise<string | null>;
}

const defaultRenewDeps: RenewCommandDeps = {
  createClient: (identity, ctx) => clientForIdentity(identity, identityClientOptions(ctx)),
  now: Date.now,
  random: Math.random,
  machineId: async () => (await new TelemetryCollector().host()).machine_id,
};

/**
 * `oneconnect-agent renew`: one renewal now, whatever the schedule. Exit 0 when the new identity is
 * stored, 3 when the platform no longer accepts the agent, 4 when it failed otherwise (the old
 * identity is then untouched).
 */
export async function renewCommand(
  ctx: CommandContext,
  overrides: Partial<RenewCommandDeps> = {},
): Promise<void> {
  const deps: RenewCommandDeps = { ...defaultRenewDeps, ...overrides };
  const { config, logger } = ctx;
  const store = new IdentityStore(config.stateDir, { logger });
  await store.auditPermissions();
  // A running service holds it too: two writers would each keep a token the other revoked.
  await using _lock = await acquireStateLock(config.stateDir, {
    command: "renew",
    action: "Cannot renew",
    logger,
  });
  const identity = await store.load();
  // A clone renewing would take over the original host's credential.
  const cloned = cloneRefusal(identity.machine_id, await deps.machineId(), "renew the certificate");
  if (cloned !== null) throw cloned;
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
  const client = deps.createClient(identity, ctx);
  try {
    // The offset `run` measured last, for the hint of a validity error.
    const measured = status.current.clock_offset;
    const clock = new ClockOffset(
      undefined,
      measured ? { seconds: measured.seconds, measuredAt: measured.measured_at } : undefined,
    );
    renewed = await renewIdentity(identity, client, { now: deps.now, signal: ctx.shutdown, clock });
    const next = deps.createClient(renewed, ctx);
    try {
      await proveRenewedClient(next, ctx.shutdown);
    } finally {
      next.close();
    }
  } catch (error) {
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
  await store.save(renewed);
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
  ctx.stdout(
    `renewed the certificate of ${renewed.agent_id}; valid until ${renewed.certificate_not_after}\n`,
  );
}
