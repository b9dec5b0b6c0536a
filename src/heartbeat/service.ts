/**
 * The heartbeat service (`run`): the identity opened for writing (enrolled first with a
 * provisioned token where there is none, or replaced where it is a clone's), then one client,
 * status recorder, clock, renewal scheduler and schedule wired into the heartbeat loop.
 */
import type { CommandContext } from "../config/context.ts";
import { certificateExpiry, RenewalScheduler } from "../enrollment/renewal.ts";
import { NotEnrolledError } from "../errors.ts";
import { isoTime } from "../iso_time.ts";
import type { Logger } from "../log.ts";
import type { PlatformClient } from "../platform/client.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import { StatusRecorder } from "../state/status_recorder.ts";
import { StatusStore } from "../state/status_store.ts";
import { openIdentityForWriting, type WritableIdentity } from "../state/writable_identity.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { clockHint, ClockOffset } from "../wire/clock_offset.ts";
import { exposedGc, HeapHousekeeping } from "./heap_housekeeping.ts";
import { heartbeatLoop } from "./loop.ts";
import { HeartbeatSchedule } from "./schedule.ts";

/** Options of the heartbeat service: the flags of `oneconnect-agent run` that are not settings. */
export interface HeartbeatServiceOptions {
  once: boolean;
}

/** Seams of {@linkcode runHeartbeatService}; each defaults to the real thing. */
export interface HeartbeatServiceDeps {
  /** Host facts and metrics for the beats, and the host's machine id for the clone guard. */
  collector: (logger: Logger) => TelemetryCollector;
  /** The client presenting `identity`; `clock` measures the platform's clock from its answers. */
  createClient: (identity: Identity, ctx: CommandContext, clock: ClockOffset) => PlatformClient;
  random: () => number;
}

const defaultDeps: HeartbeatServiceDeps = {
  collector: (logger) => new TelemetryCollector({ logger }),
  createClient: (identity, ctx, clock) =>
    clientForIdentity(identity, identityClientOptions(ctx, { clock })),
  random: Math.random,
};

/** `metrics_file`, loaded only when configured. */
type MetricsFile = {
  path: string;
  module: typeof import("../state/metrics_file.ts");
};

/**
 * Runs the heartbeat service: sends heartbeats with one HTTP client for the life of the process
 * until `ctx.shutdown` (resolves), a rejection (throws exit 3) or, with `once`, after one attempt.
 * A host with no identity enrolls with the provisioned token (exit 5 without one); an identity
 * enrolled on another host is refused (exit 3), or replaced when a token is provisioned.
 */
export async function runHeartbeatService(
  ctx: CommandContext,
  options: HeartbeatServiceOptions,
  overrides: Partial<HeartbeatServiceDeps> = {},
): Promise<void> {
  const deps: HeartbeatServiceDeps = { ...defaultDeps, ...overrides };
  const { config, logger } = ctx;
  // Inventory (file reads, syscalls; it never throws) overlaps loading the identity: start-up
  // time is the first heartbeat's latency.
  const collector = deps.collector(logger);
  const hostCollected = collector.host();
  const store = new IdentityStore(config.stateDir, { logger });
  const lockOptions = {
    command: options.once ? "run --once" : "run",
    action: "Cannot run",
    logger,
  };
  let metrics: MetricsFile | undefined;
  // Held for the life of the process: this process renews and keeps the identity in memory.
  let opened: WritableIdentity<"strict"> = await openIdentityForWriting(store, {
    ...lockOptions,
    beforeLock: async () => {
      metrics = await openMetricsFile(config.metricsFile);
      await enrollIfNoIdentity(ctx, store, metrics);
    },
    cloneGuard: {
      verb: "send heartbeats",
      machineId: async () => (await hostCollected).machine_id,
    },
  });
  await using _lock = { [Symbol.asyncDispose]: () => opened.release() };
  // What the audit at start repaired, also when a clone's identity is replaced below.
  const repairs = opened.repairs;
  // The clone guard reads it only when the identity records a machine id; the first beat's
  // inventory is complete before the loop starts either way.
  await hostCollected;
  if (opened.cloned !== null) {
    const provisioned = await import("../enrollment/provisioned_enrollment.ts");
    if (!(await provisioned.tokenProvisioned(ctx, store))) {
      const statusFile = await StatusStore.open(config.stateDir, opened.identity.agent_id, {
        logger,
      });
      await new StatusRecorder(statusFile, logger).stopped(
        "identity_cloned",
        opened.cloned.message,
        Date.now(),
      );
      throw opened.cloned;
    }
    await provisioned.replaceClonedIdentity(ctx, store, () => opened.release());
    opened = await openIdentityForWriting(store, { ...lockOptions, audit: false });
  }
  const identity = opened.identity;
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
  warnOfExpiry(identity, clock, logger);

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
  const makeClient = (id: Identity) => deps.createClient(id, ctx, clock);
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
    intervalSeconds: config.intervalSeconds,
    enrollmentIntervalSeconds: identity.heartbeat_interval_seconds,
    random: deps.random,
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

/** The configured metrics file's module, refusing (exit 2) a directory another user can write. */
async function openMetricsFile(path: string | undefined): Promise<MetricsFile | undefined> {
  if (path === undefined) return undefined;
  const metrics = { path, module: await import("../state/metrics_file.ts") };
  await metrics.module.requireSafeMetricsDir(path);
  return metrics;
}

/**
 * No identity yet (a fresh install, a golden image's first boot): enrolls with a provisioned
 * token. Without one, monitoring must still see this host, as enrolled 0.
 */
async function enrollIfNoIdentity(
  ctx: CommandContext,
  store: IdentityStore,
  metrics: MetricsFile | undefined,
): Promise<void> {
  if (await store.exists()) return;
  try {
    await (await import("../enrollment/provisioned_enrollment.ts")).enrollProvisioned(ctx, store);
  } catch (e) {
    if (e instanceof NotEnrolledError && metrics !== undefined) {
      metrics.module.writeNotEnrolledMetrics(metrics.path, ctx.logger);
    }
    throw e;
  }
}

/** Warns at start of a certificate that expired or expires within the warning window. */
function warnOfExpiry(identity: Identity, clock: ClockOffset, logger: Logger): void {
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
}
