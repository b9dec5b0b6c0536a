/** `oneconnect-agent run`: wires the identity, renewal, telemetry and status into the heartbeat loop. */
import type { CommandContext } from "../config/context.ts";
import { heartbeatLoop } from "../heartbeat/loop.ts";
import { HeartbeatSchedule } from "../heartbeat/schedule.ts";
import { exposedGc, HeapHousekeeping } from "../heartbeat/heap_housekeeping.ts";
import { certificateExpiry, RenewalScheduler } from "../enrollment/renewal.ts";
import { clockHint, ClockOffset } from "../wire/clock_offset.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { cloneRefusal } from "../state/clone_guard.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import { acquireStateLock } from "../state/state_lock.ts";
import { StatusRecorder } from "../state/status_recorder.ts";
import { StatusStore } from "../state/status_store.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { isoTime } from "../iso_time.ts";
import { NotEnrolledError } from "../errors.ts";

/** Options of `oneconnect-agent run`. */
export interface RunOptions {
  once: boolean;
  intervalSeconds?: number;
}

/**
 * `oneconnect-agent run`: loads the identity, refuses a cloned one, and sends heartbeats with one
 * HTTP client for the life of the process until SIGINT/SIGTERM (exit 0), a rejection (exit 3) or,
 * with `--once`, after one attempt (0 ok, 3 rejected, 4 failed).
 */
export async function runCommand(ctx: CommandContext, options: RunOptions): Promise<void> {
  const { config, logger } = ctx;
  // Inventory (file reads, syscalls; it never throws) overlaps loading the identity: start-up
  // time is the first heartbeat's latency.
  const collector = new TelemetryCollector({ logger });
  const hostCollected = collector.host();
  const store = new IdentityStore(config.stateDir, { logger });
  const repairs = await store.auditPermissions();
  const metrics = config.metricsFile === undefined
    ? undefined
    : { path: config.metricsFile, module: await import("../state/metrics_file.ts") };
  // At start: a directory another user can write is refused (exit 2).
  if (metrics) await metrics.module.requireSafeMetricsDir(metrics.path);
  // No identity yet (a fresh install, a golden image's first boot): enroll with a provisioned token.
  if (!(await store.exists())) {
    try {
      await (await import("../enrollment/provisioned_enrollment.ts")).enrollProvisioned(ctx, store);
    } catch (e) {
      // Not enrolled and no token: monitoring must still see this host, as enrolled 0.
      if (e instanceof NotEnrolledError && metrics !== undefined) {
        metrics.module.writeNotEnrolledMetrics(metrics.path, logger);
      }
      throw e;
    }
  }
  const lockOptions = {
    command: options.once ? "run --once" : "run",
    action: "Cannot run",
    logger,
  };
  // Held for the life of the process: this process renews and keeps the identity in memory.
  let lock = await acquireStateLock(config.stateDir, lockOptions);
  await using _lock = { [Symbol.asyncDispose]: () => lock.release() };
  let identity = await store.load();
  const host = await hostCollected;
  const cloned = cloneRefusal(identity.machine_id, host.machine_id, "send heartbeats");
  if (cloned !== null) {
    const provisioned = await import("../enrollment/provisioned_enrollment.ts");
    if (!(await provisioned.tokenProvisioned(ctx, store))) {
      const statusFile = await StatusStore.open(config.stateDir, identity.agent_id, { logger });
      await new StatusRecorder(statusFile, logger).stopped(
        "identity_cloned",
        cloned.message,
        Date.now(),
      );
      throw cloned;
    }
    await provisioned.replaceClonedIdentity(ctx, store, () => lock.release());
    lock = await acquireStateLock(config.stateDir, lockOptions);
    identity = await store.load();
  }
  const statusFile = await StatusStore.open(config.stateDir, identity.agent_id, { logger });
  const st = statusFile.current;
  if (repairs.length > 0) st.permission_repairs = repairs;
  st.certificate_expires_at = identity.certificate_not_after;

  // One measurement of the platform's clock for the whole process, starting from the last run's.
  const clock = new ClockOffset(
    logger,
    st.clock_offset
      ? { seconds: st.clock_offset.seconds, measuredAt: st.clock_offset.measured_at }
      : undefined,
  );
  const recordClock = () => {
    const latest = clock.latest;
    if (latest) st.clock_offset = { seconds: latest.seconds, measured_at: latest.measuredAt };
  };

  const expiry = certificateExpiry(identity.certificate_not_after, Date.now());
  if (expiry.kind === "expired") {
    logger.warn(
      `Agent certificate expired at ${identity.certificate_not_after}${clockHint(clock.latest)}`,
    );
  } else if (expiry.kind === "soon") {
    logger.warn(
      `Agent certificate expires at ${identity.certificate_not_after} (in ${
        Math.floor(expiry.leftMs / 3600_000)
      } h)`,
    );
  }

  // Heartbeats and renewals record through one recorder; the metrics file, when asked for, is
  // rewritten only by saves that record a new attempt.
  const status = new StatusRecorder(
    metrics === undefined ? statusFile : metrics.module.withMetricsFile(statusFile, {
      path: metrics.path,
      identity,
      logger,
    }),
    logger,
  );
  const makeClient = (id: Identity) => clientForIdentity(id, identityClientOptions(ctx, { clock }));
  // Owns the client: after a renewal it holds one presenting the new certificate.
  using renewal = new RenewalScheduler({
    identity,
    client: makeClient(identity),
    createClient: makeClient,
    store,
    status,
    logger,
    clock,
  });
  const schedule = new HeartbeatSchedule({
    intervalSeconds: options.intervalSeconds ?? config.intervalSeconds,
    enrollmentIntervalSeconds: identity.heartbeat_interval_seconds,
    random: Math.random,
  });
  logger.info(options.once ? "Sending one heartbeat" : "Started", {
    agent_id: identity.agent_id,
    platform: identity.platform_url,
    auth: config.auth,
    interval_seconds: schedule.intervalSeconds,
    certificate_expires_at: identity.certificate_not_after,
    next_renewal_at: isoTime(renewal.nextAt()),
  });
  // Between beats, so that it costs no wake-up of its own.
  const housekeeping = new HeapHousekeeping(exposedGc(), () => performance.now());
  await heartbeatLoop({
    agentId: identity.agent_id,
    send: async (body, signal) => {
      try {
        const answer = await renewal.client.heartbeat(identity.agent_id, body, signal);
        collector.delivered(body.metrics);
        return answer;
      } finally {
        recordClock();
      }
    },
    snapshot: async () => ({
      host: await collector.host(),
      metrics: await collector.sampleMetrics(),
    }),
    status,
    schedule,
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now(),
    timers: {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (id) => clearTimeout(id as number),
    },
    logger,
    shutdown: ctx.shutdown,
    once: options.once,
    beforeAttempt: (signal) => {
      housekeeping.collectIfDue();
      return renewal.runIfDue(signal);
    },
  });
}
