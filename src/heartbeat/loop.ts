import {
  type BackoffPolicy,
  DEFAULT_BACKOFF,
  failureDelay,
  MAX_RETRY_SPREAD_SECONDS,
  withJitter,
} from "../platform/backoff.ts";
import { clockHint, ClockOffset, clockOffsetReport } from "../platform/clock_offset.ts";
import { cloneRefusal } from "../state/clone_guard.ts";
import type { CommandContext } from "../context.ts";
import {
  FEATURE_HOST_DIGEST,
  type HeartbeatBody,
  type HeartbeatResponse,
  isCredentialRejection,
  notRejectedNote,
  REJECTION_STATUSES,
} from "../platform/contract.ts";
import { CredentialRejectedError, errorMessage, PlatformError } from "../errors.ts";
import { HostDelta } from "./host_delta.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { type Identity, IdentityStore } from "../state/identity_store.ts";
import type { Logger } from "../log.ts";
import { outageGap } from "./outage_gap.ts";
import { RenewalScheduler } from "../enrollment/renewal.ts";
import { acquireStateLock } from "../state/state_lock.ts";
import { type AgentStatus, type StatusError, StatusStore } from "../state/status_store.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import type { Host, Metrics } from "../platform/telemetry_wire.ts";
import { VERSION } from "../version.ts";

/** Default heartbeat interval when neither flag, platform nor enrollment set one. */
export const DEFAULT_INTERVAL_SECONDS = 60;
/** Bounds of an interval the platform may ask for (`next_heartbeat_seconds`). */
export const PLATFORM_INTERVAL_BOUNDS = { min: 10, max: 86400 } as const;
/** Bounds of `--interval`. */
export const FLAG_INTERVAL_BOUNDS = { min: 1, max: 86400 } as const;
/**
 * Sequence numbers reserved per fsync'd status write: a crash can skip up to this many numbers
 * but never reuse one, and a healthy agent pays the reservation write once per this many beats.
 */
export const SEQUENCE_RESERVATION_BLOCK = 100;
/** Days before certificate expiry from which `run` warns. */
export const CERTIFICATE_WARNING_DAYS = 7;

/** What the platform's `next_heartbeat_seconds` amounted to. */
export type IntervalHint =
  | { kind: "absent" }
  | { kind: "ok"; seconds: number }
  | { kind: "clamped"; seconds: number; raw: number }
  | { kind: "invalid"; raw: unknown };

/**
 * Classifies a `next_heartbeat_seconds` value: integers are clamped to 10..86400; zero, negative,
 * non-integer and non-number values are invalid (the caller ignores them with a warning).
 */
export function parseIntervalHint(value: unknown): IntervalHint {
  if (value === undefined || value === null) return { kind: "absent" };
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    return { kind: "invalid", raw: value };
  }
  const { min, max } = PLATFORM_INTERVAL_BOUNDS;
  const seconds = Math.min(max, Math.max(min, value));
  return seconds === value ? { kind: "ok", seconds } : { kind: "clamped", seconds, raw: value };
}

/** Options for {@linkcode HeartbeatSchedule}. */
export interface HeartbeatScheduleOptions {
  /** `--interval` (or `interval_seconds` in agent.json): overrides everything else. */
  intervalSeconds?: number;
  /** The interval the platform gave at enrollment. */
  enrollmentIntervalSeconds?: number;
  random: () => number;
  backoff?: BackoffPolicy;
}

/**
 * The pure heartbeat schedule: which interval applies, and how long to wait after a success or a
 * failure. It holds no timer and no clock, so the fleet simulation can drive thousands of them.
 */
export class HeartbeatSchedule {
  readonly #flag: number | undefined;
  readonly #enrollment: number | undefined;
  readonly #random: () => number;
  readonly #backoff: BackoffPolicy;
  #platform: number | undefined;
  /** Consecutive failures since the last success. */
  failures = 0;

  constructor(options: HeartbeatScheduleOptions) {
    const flag = options.intervalSeconds;
    if (flag !== undefined) {
      const { min, max } = FLAG_INTERVAL_BOUNDS;
      if (!Number.isFinite(flag) || flag < min || flag > max) {
        throw new RangeError(`interval ${flag} is outside ${min}..${max} seconds`);
      }
    }
    this.#flag = flag;
    const enrolled = options.enrollmentIntervalSeconds;
    this.#enrollment = enrolled === undefined ? undefined : (() => {
      const hint = parseIntervalHint(enrolled);
      return hint.kind === "ok" || hint.kind === "clamped" ? hint.seconds : undefined;
    })();
    this.#random = options.random;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  /** The interval in force: flag > platform's last hint > enrollment > 60 s. */
  get intervalSeconds(): number {
    return this.#flag ?? this.#platform ?? this.#enrollment ?? DEFAULT_INTERVAL_SECONDS;
  }

  /** Where {@linkcode intervalSeconds} comes from. */
  get intervalSource(): "flag" | "platform" | "enrollment" | "default" {
    if (this.#flag !== undefined) return "flag";
    if (this.#platform !== undefined) return "platform";
    if (this.#enrollment !== undefined) return "enrollment";
    return "default";
  }

  /** Takes the platform's `next_heartbeat_seconds`; an invalid value leaves the interval as is. */
  applyHint(value: unknown): IntervalHint {
    const hint = parseIntervalHint(value);
    if (hint.kind === "ok" || hint.kind === "clamped") this.#platform = hint.seconds;
    return hint;
  }

  /** Seconds to wait after a success (resets the backoff): the interval, ±10 %. */
  afterSuccess(): number {
    this.failures = 0;
    return withJitter(this.intervalSeconds, this.#random);
  }

  /**
   * Seconds to wait after a failure: full-jitter exponential backoff, never less than
   * `retryAfterSeconds`. Above that floor the wait is spread over about one interval: a
   * fleet told the same Retry-After (often an HTTP-date: the end of an outage) would otherwise
   * come back in the same second (the bench measured a 7x peak after a 2-minute outage). The
   * spread window is at most {@linkcode MAX_RETRY_SPREAD_SECONDS}, so a long interval (a day)
   * cannot stretch a capped Retry-After beyond the documented bound.
   */
  afterFailure(retryAfterSeconds?: number): number {
    this.failures++;
    // U(0,1) x a jittered interval is the forward-recurrence time of a steady fleet: agents come
    // back in steady-state phase. U(0,1) x the bare interval piles returns onto second beats.
    const spread = () =>
      this.#random() *
      Math.min(withJitter(this.intervalSeconds, this.#random), MAX_RETRY_SPREAD_SECONDS);
    return failureDelay(this.failures, this.#random, retryAfterSeconds, spread, this.#backoff);
  }
}

/** The part of the status file the loop reads and writes. */
export interface StatusSink {
  current: AgentStatus;
  /** Persists `current` atomically. */
  save(): Promise<void>;
}

/** Timer seam (global timers in production, a fake clock in tests). */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The host and metrics of one heartbeat (the loop decides whether `host` goes on the wire). */
export interface Snapshot {
  host: Host;
  metrics: Metrics;
}

/** What the heartbeat loop needs; every effect is a seam. */
export interface HeartbeatLoopDeps {
  agentId: string;
  /** Sends one heartbeat; rejects with a {@linkcode PlatformError}. */
  send: (body: HeartbeatBody, signal: AbortSignal) => Promise<HeartbeatResponse>;
  /** Collects the newest host facts and metrics (never throws). */
  snapshot: () => Promise<Snapshot> | Snapshot;
  status: StatusSink;
  schedule: HeartbeatSchedule;
  /** Monotonic milliseconds (performance.now): scheduling never looks at the wall clock. */
  monotonicMs: () => number;
  /** Wall-clock milliseconds, only for `sent_at` and the timestamps in status. */
  wallMs: () => number;
  timers: Timers;
  logger: Logger;
  /** Aborted on SIGINT/SIGTERM: aborts the request in flight and the wait, then the loop returns. */
  shutdown: AbortSignal;
  /** One attempt (plus one prompt retry after a sequence conflict). */
  once?: boolean;
  agentVersion?: string;
  /** Runs between beats, before each attempt (certificate renewal when due); must not throw. */
  beforeAttempt?: (signal: AbortSignal) => Promise<unknown>;
  /**
   * SHA-256 (lowercase hex) of a host's JSON text, for `host_digest`; default WebCrypto, whose
   * asynchronous op a fake clock cannot drive.
   */
  digest?: (text: string) => Promise<string>;
}

/** How the loop ended when it did not throw. */
export type LoopEnd = "shutdown" | "once";

const iso = (ms: number) => new Date(ms).toISOString();

function platformErrorOf(error: unknown): PlatformError {
  if (error instanceof PlatformError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new PlatformError(`unexpected error: ${message}`, { kind: "invalid_response" }, {
    cause: error,
  });
}

function statusErrorOf(error: PlatformError): StatusError {
  return {
    kind: error.kind,
    http_status: error.httpStatus ?? null,
    code: error.code ?? null,
    message: error.message,
  };
}

/** `last_sequence` of a 409 `sequence_conflict`, when the platform sent a usable one. */
function conflictSequence(error: PlatformError): number | undefined {
  if (error.httpStatus !== 409 || error.code !== "sequence_conflict") return undefined;
  const last = error.problem?.last_sequence;
  return typeof last === "number" && Number.isSafeInteger(last) && last >= 0 ? last : undefined;
}

function rejectionMessage(error: PlatformError): string {
  const why = error.code === "agent_mismatch"
    ? "the platform says this credential belongs to another agent"
    : error.code === "agent_unknown"
    ? "the platform no longer knows this agent"
    : "the platform no longer accepts this agent's credential";
  return `Cannot send heartbeat: ${error.message}; ${why}: re-enroll with "oneconnect-agent enroll --force"`;
}

/**
 * Runs the heartbeat loop until shutdown (returns `"shutdown"`), for one attempt with `once`
 * (returns `"once"` or throws the {@linkcode PlatformError}), or until the platform rejects the
 * credential (throws {@linkcode CredentialRejectedError}). One timer and at most one request
 * exist at any time; the shutdown signal gets one listener for the life of the loop.
 */
export async function heartbeatLoop(deps: HeartbeatLoopDeps): Promise<LoopEnd> {
  const { status, schedule, logger, timers, shutdown } = deps;
  const agentVersion = deps.agentVersion ?? VERSION;
  const st = status.current;
  // After a crash the reservation may exceed what status says was sent: start past both. An
  // orderly stop (shutdown, --once, rejection) hands the unused rest of the block back.
  let next = Math.max(st.sequence, st.sequence_reserved) + 1;
  let request: AbortController | undefined;
  let timer: unknown;
  let wake: (() => void) | undefined;
  const onShutdown = () => {
    request?.abort(shutdown.reason);
    if (timer !== undefined) timers.clearTimeout(timer);
    timer = undefined;
    wake?.();
  };
  shutdown.addEventListener("abort", onShutdown, { once: true });

  let saveFailing = false;
  const save = async () => {
    try {
      await status.save();
      if (saveFailing) logger.info("Status file writable again");
      saveFailing = false;
    } catch (e) {
      // Heartbeats matter more than the local record; the platform catches a reused sequence.
      if (!saveFailing) {
        logger.warn(`Cannot write status file: ${errorMessage(e)}`);
      }
      saveFailing = true;
    }
  };
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      if (shutdown.aborted) return resolve();
      wake = resolve;
      timer = timers.setTimeout(() => {
        timer = undefined;
        wake = undefined;
        resolve();
      }, Math.max(0, ms));
    });

  let everSucceeded = false;
  let failingSinceMono: number | undefined;
  let conflictRetried = false;
  let warnedHint = false;
  let announcedInterval = schedule.intervalSeconds;
  const hostDelta = new HostDelta(deps.digest);
  // Set when the platform refused a digest-only beat despite advertising `host_digest`: from then
  // on every beat of this process carries `host`, so one refusal can never repeat.
  let digestRefused = false;
  const digestOnly = () =>
    !digestRefused && (st.platform_features ?? []).includes(FEATURE_HOST_DIGEST);
  let announcedDigest = digestOnly();

  st.stopped = null;
  try {
    while (!shutdown.aborted) {
      if (deps.beforeAttempt) {
        await deps.beforeAttempt(shutdown);
        if (shutdown.aborted) break;
      }
      const startedMono = deps.monotonicMs();
      const sequence = next;
      if (sequence > st.sequence_reserved) {
        st.sequence_reserved = sequence + SEQUENCE_RESERVATION_BLOCK - 1;
        await save();
      }
      const snap = await deps.snapshot();
      const inventory = await hostDelta.fields(snap.host, digestOnly());
      if (shutdown.aborted) break;
      // Outage evidence (contract v1.3): from status.json, so a restart keeps it.
      const gap = outageGap(st);
      const clockOffset = clockOffsetReport(st);
      const body: HeartbeatBody = {
        agent_id: deps.agentId,
        sequence,
        sent_at: iso(deps.wallMs()),
        agent_version: agentVersion,
        ...inventory,
        metrics: snap.metrics,
        ...(gap === undefined ? {} : { gap }),
        ...(clockOffset === undefined ? {} : { clock_offset: clockOffset }),
      };
      st.last_attempt_at = body.sent_at;
      request = new AbortController();
      let response: HeartbeatResponse | undefined;
      let failure: PlatformError | undefined;
      try {
        response = await deps.send(body, request.signal);
      } catch (e) {
        failure = platformErrorOf(e);
      } finally {
        request = undefined;
      }
      st.sequence = sequence;
      next = sequence + 1;
      if (shutdown.aborted) break;
      if (failure === undefined) st.heartbeats_sent_total = (st.heartbeats_sent_total ?? 0) + 1;
      else st.heartbeats_failed_total = (st.heartbeats_failed_total ?? 0) + 1;

      let delaySeconds: number;
      let retryNow = false;
      const carriedHost = "host" in body && body.host !== undefined;
      if (failure === undefined) {
        hostDelta.accepted(carriedHost, response?.host_required === true);
        // The platform's last word on what it supports; a v1.0 platform's answers have none.
        st.platform_features = response?.features ?? [];
        if (digestOnly() !== announcedDigest) {
          announcedDigest = digestOnly();
          logger.info(
            announcedDigest
              ? "Platform supports digest-only heartbeats (host_digest): host sent when changed"
              : "Platform does not advertise host_digest: host sent on every heartbeat",
          );
        }
        const hint = schedule.applyHint(response?.next_heartbeat_seconds);
        if ((hint.kind === "invalid" || hint.kind === "clamped") && !warnedHint) {
          warnedHint = true;
          logger.warn(
            hint.kind === "invalid"
              ? `Ignoring invalid next_heartbeat_seconds ${
                JSON.stringify(hint.raw) ?? String(hint.raw)
              } from the platform (expected an integer from 10 to 86400)`
              : `Clamping next_heartbeat_seconds ${hint.raw} from the platform to ${hint.seconds}`,
          );
        }
        const recoveredFrom = st.consecutive_failures;
        const since = st.failing_since;
        delaySeconds = schedule.afterSuccess();
        // Measured from the attempt's start, so request time does not stretch the interval.
        delaySeconds = Math.max(0, delaySeconds - (deps.monotonicMs() - startedMono) / 1000);
        st.last_success_at = iso(deps.wallMs());
        st.consecutive_failures = 0;
        st.failing_since = null;
        st.last_error = null;
        conflictRetried = false;
        if (recoveredFrom > 0) {
          const downSeconds = failingSinceMono === undefined
            ? undefined
            : Math.round((deps.monotonicMs() - failingSinceMono) / 1000);
          logger.info(`Heartbeats recovered after ${recoveredFrom} failed attempts`, {
            failing_since: since,
            down_seconds: downSeconds,
            gap_reported: gap !== undefined,
          });
        }
        if (!everSucceeded) {
          everSucceeded = true;
          logger.info("First heartbeat accepted", { sequence });
        }
        failingSinceMono = undefined;
        if (schedule.intervalSeconds !== announcedInterval) {
          announcedInterval = schedule.intervalSeconds;
          logger.info(`Heartbeat interval is now ${announcedInterval} s`, {
            source: schedule.intervalSource,
          });
        }
      } else if (
        !carriedHost && !digestRefused &&
        (failure.httpStatus === 400 || failure.httpStatus === 422)
      ) {
        // Contract v1.3: a platform that refuses a beat without `host` gets the full one at once
        // (new sequence: the refused one may have been recorded) and on every later beat.
        digestRefused = true;
        announcedDigest = false;
        logger.warn(
          `Platform refused a heartbeat without host (${failure.message}); sending the full host on every heartbeat of this process`,
        );
        delaySeconds = 0;
        retryNow = true;
      } else if (isCredentialRejection(failure)) {
        const message = rejectionMessage(failure);
        st.consecutive_failures++;
        st.failing_since ??= st.last_attempt_at;
        st.last_error = statusErrorOf(failure);
        st.next_attempt_at = null;
        st.stopped = { at: iso(deps.wallMs()), reason: "credential_rejected", message };
        st.sequence_reserved = st.sequence;
        await save();
        throw new CredentialRejectedError(message, { cause: failure });
      } else if (conflictSequence(failure) !== undefined && !conflictRetried) {
        // The platform saw a later sequence (status lost or restored from a backup): continue
        // after it at once, once; a second conflict in a row backs off like any failure.
        conflictRetried = true;
        next = Math.max(next, conflictSequence(failure)! + 1);
        logger.info(`Platform has seen sequence ${next - 1}; continuing from ${next}`);
        delaySeconds = 0;
        retryNow = true;
      } else {
        conflictRetried = false;
        const last = conflictSequence(failure);
        if (last !== undefined) next = Math.max(next, last + 1);
        delaySeconds = schedule.afterFailure(failure.retryAfterSeconds);
        st.consecutive_failures++;
        st.last_error = statusErrorOf(failure);
        st.failing_since ??= st.last_attempt_at;
        if (failingSinceMono === undefined) {
          failingSinceMono = startedMono;
          // An edge's page (or an unknown code) at a rejection status is no rejection: say so.
          const notRejected = notRejectedNote(failure, REJECTION_STATUSES);
          logger.warn(
            `Heartbeats failing since ${st.failing_since}: ${failure.message}${notRejected}`,
            {
              retry_in_seconds: deps.once ? undefined : Math.round(delaySeconds * 10) / 10,
            },
          );
        }
      }

      st.interval_seconds = schedule.intervalSeconds;
      if (deps.once && !retryNow) {
        st.next_attempt_at = null;
        st.sequence_reserved = st.sequence;
        await save();
        if (failure !== undefined) {
          throw new PlatformError(`Cannot send heartbeat: ${failure.message}`, {
            kind: failure.kind,
            httpStatus: failure.httpStatus,
            code: failure.code,
            detail: failure.detail,
            retryAfterSeconds: failure.retryAfterSeconds,
            problem: failure.problem,
            contentType: failure.contentType,
          }, { cause: failure });
        }
        return "once";
      }
      const delayMs = Math.round(delaySeconds * 1000);
      st.next_attempt_at = iso(deps.wallMs() + delayMs);
      await save();
      if (logger.enabled("debug")) {
        logger.debug(failure === undefined ? "Heartbeat sent" : "Heartbeat failed", {
          sequence,
          error: failure?.message,
          next_in_seconds: delayMs / 1000,
        });
      }
      if (!retryNow) await wait(delayMs);
    }
    st.next_attempt_at = null;
    st.sequence_reserved = st.sequence;
    st.stopped = {
      at: iso(deps.wallMs()),
      reason: "shutdown",
      message: shutdown.reason instanceof Error ? shutdown.reason.message : "stopped",
    };
    await save();
    logger.info("Stopped", { sequence: st.sequence });
    return "shutdown";
  } finally {
    shutdown.removeEventListener("abort", onShutdown);
    if (timer !== undefined) timers.clearTimeout(timer);
  }
}

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
  // Held for the life of the process: this process renews and keeps the identity in memory.
  await using _lock = await acquireStateLock(config.stateDir, {
    command: options.once ? "run --once" : "run",
    action: "Cannot run",
    logger,
  });
  const identity = await store.load();
  const status = await StatusStore.open(config.stateDir, identity.agent_id, { logger });
  const st = status.current;
  if (repairs.length > 0) st.permission_repairs = repairs;
  st.certificate_expires_at = identity.certificate_not_after;

  const host = await hostCollected;
  const cloned = cloneRefusal(identity.machine_id, host.machine_id, "send heartbeats");
  if (cloned !== null) {
    st.next_attempt_at = null;
    st.stopped = {
      at: new Date().toISOString(),
      reason: "identity_cloned",
      message: cloned.message,
    };
    await status.save().catch((e) => logger.warn(`Cannot write status file: ${errorMessage(e)}`));
    throw cloned;
  }

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

  const expiresMs = Date.parse(identity.certificate_not_after);
  const leftMs = expiresMs - Date.now();
  if (leftMs <= 0) {
    logger.warn(
      `Agent certificate expired at ${identity.certificate_not_after}${clockHint(clock.latest)}`,
    );
  } else if (leftMs < CERTIFICATE_WARNING_DAYS * 86400_000) {
    logger.warn(
      `Agent certificate expires at ${identity.certificate_not_after} (in ${
        Math.floor(leftMs / 3600_000)
      } h)`,
    );
  }

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
    next_renewal_at: new Date(renewal.nextAt()).toISOString(),
  });
  const metricsFile = config.metricsFile;
  const sink: StatusSink = metricsFile === undefined
    ? status
    : (await import("../state/metrics_file.ts")).withMetricsFile(status, {
      path: metricsFile,
      identity,
      logger,
    });
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
    status: sink,
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
    beforeAttempt: (signal) => renewal.runIfDue(signal),
  });
}
