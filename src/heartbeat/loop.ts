/**
 * The heartbeat loop: one attempt at a time, each outcome classified once (accepted, host refused,
 * rejected, conflict, retry), status recorded through one {@linkcode StatusRecorder}.
 */
import { clockOffsetReport } from "../wire/clock_offset.ts";
import {
  FEATURE_HOST_DIGEST,
  type HeartbeatBody,
  type HeartbeatResponse,
  notRejectedNote,
  REJECTION_STATUSES,
} from "../wire/contract.ts";
import { CredentialRejectedError, failureFields, PlatformError } from "../errors.ts";
import { HostDelta } from "./host_delta.ts";
import type { Logger } from "../log.ts";
import { outageGap } from "./outage_gap.ts";
import { classifyOutcome, rejectionMessage, statusErrorOf } from "./outcome.ts";
import type { HeartbeatSchedule } from "./schedule.ts";
import { StatusRecorder, type StatusSink } from "../state/status_recorder.ts";
import type { Host, Metrics } from "../wire/telemetry_wire.ts";
import { VERSION } from "../version.ts";
import { isoTime } from "../iso_time.ts";

/**
 * Sequence numbers reserved per fsync'd status write: a crash can skip up to this many numbers
 * but never reuse one, and a healthy agent pays the reservation write once per this many beats.
 */
export const SEQUENCE_RESERVATION_BLOCK = 100;

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
  /** Where status is recorded (a {@linkcode StatusRecorder} shared with renewal, or a sink). */
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
   * SHA-256 (lowercase hex) of a host's JSON text, for `host_digest`; default the one
   * {@linkcode HostDelta} uses (synchronous underneath). Tests pass one that records what was hashed.
   */
  digest?: (text: string) => Promise<string>;
}

/** How the loop ended when it did not throw. */
export type LoopEnd = "shutdown" | "once";

/**
 * The loop's one timer and one request in flight, both cut short by shutdown, which gets one
 * listener for the life of the loop.
 */
class Interruptible implements Disposable {
  readonly #shutdown: AbortSignal;
  readonly #timers: Timers;
  #request: AbortController | undefined;
  #timer: unknown;
  #wake: (() => void) | undefined;

  constructor(shutdown: AbortSignal, timers: Timers) {
    this.#shutdown = shutdown;
    this.#timers = timers;
    shutdown.addEventListener("abort", this.#onShutdown, { once: true });
  }

  #onShutdown = () => {
    this.#request?.abort(this.#shutdown.reason);
    this.#clearTimer();
    this.#wake?.();
  };

  #clearTimer() {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Runs `send` with a signal that shutdown aborts; its answer or the error it rejected with. */
  async send<T>(
    send: (signal: AbortSignal) => Promise<T>,
  ): Promise<{ response: T } | { error: unknown }> {
    this.#request = new AbortController();
    try {
      return { response: await send(this.#request.signal) };
    } catch (error) {
      return { error };
    } finally {
      this.#request = undefined;
    }
  }

  /** Waits `ms`, or until shutdown. */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#shutdown.aborted) return resolve();
      this.#wake = resolve;
      this.#timer = this.#timers.setTimeout(() => {
        this.#timer = undefined;
        this.#wake = undefined;
        resolve();
      }, Math.max(0, ms));
    });
  }

  [Symbol.dispose](): void {
    this.#shutdown.removeEventListener("abort", this.#onShutdown);
    this.#clearTimer();
  }
}

/** The log lines said once, or once per change of state, over the life of the loop. */
class LoopNotes {
  readonly #logger: Logger;
  readonly #schedule: HeartbeatSchedule;
  #everSucceeded = false;
  #warnedHint = false;
  #interval: number;
  #digestOnly: boolean;
  /** Monotonic start of the first failed attempt of the current streak in this process. */
  #failingSinceMono: number | undefined;

  constructor(logger: Logger, schedule: HeartbeatSchedule, digestOnly: boolean) {
    this.#logger = logger;
    this.#schedule = schedule;
    this.#interval = schedule.intervalSeconds;
    this.#digestOnly = digestOnly;
  }

  /** Whether heartbeats go without `host` when it did not change. */
  digestOnly(now: boolean): void {
    if (now === this.#digestOnly) return;
    this.#digestOnly = now;
    this.#logger.info(
      now
        ? "Platform supports digest-only heartbeats (host_digest): host sent when changed"
        : "Platform does not advertise host_digest: host sent on every heartbeat",
    );
  }

  /** Forgets the digest-only mode without a line (the refusal said it). */
  digestRefused(): void {
    this.#digestOnly = false;
  }

  /** Takes the platform's interval hint; warns about the first bad one. */
  hint(value: unknown): void {
    const hint = this.#schedule.applyHint(value);
    if ((hint.kind === "invalid" || hint.kind === "clamped") && !this.#warnedHint) {
      this.#warnedHint = true;
      this.#logger.warn(
        hint.kind === "invalid"
          ? `Ignoring invalid next_heartbeat_seconds ${
            JSON.stringify(hint.raw) ?? String(hint.raw)
          } from the platform (expected an integer from 10 to 86400)`
          : `Clamping next_heartbeat_seconds ${hint.raw} from the platform to ${hint.seconds}`,
      );
    }
  }

  /** A failed attempt; the first of a streak is a warning. */
  failed(
    startedMono: number,
    failure: PlatformError,
    failingSince: string | null,
    retryInSeconds: number | undefined,
  ): void {
    if (this.#failingSinceMono !== undefined) return;
    this.#failingSinceMono = startedMono;
    // An edge's page (or an unknown code) at a rejection status is no rejection: say so.
    const notRejected = notRejectedNote(failure, REJECTION_STATUSES);
    this.#logger.warn(
      `Heartbeats failing since ${failingSince}: ${failure.message}${notRejected}`,
      { ...failureFields(failure), retry_in_seconds: retryInSeconds },
    );
  }

  /** An accepted beat, after `recoveredFrom` failed ones (of this process or a previous one). */
  accepted(
    sequence: number,
    nowMono: number,
    recovery: { from: number; since: string | null; gapReported: boolean },
  ): void {
    if (recovery.from > 0) {
      const downSeconds = this.#failingSinceMono === undefined
        ? undefined
        : Math.round((nowMono - this.#failingSinceMono) / 1000);
      this.#logger.info(`Heartbeats recovered after ${recovery.from} failed attempts`, {
        failing_since: recovery.since,
        down_seconds: downSeconds,
        gap_reported: recovery.gapReported,
      });
    }
    if (!this.#everSucceeded) {
      this.#everSucceeded = true;
      this.#logger.info("First heartbeat accepted", { sequence });
    }
    this.#failingSinceMono = undefined;
  }

  /** A change of the interval in force. */
  interval(): void {
    const schedule = this.#schedule;
    if (schedule.intervalSeconds === this.#interval) return;
    this.#interval = schedule.intervalSeconds;
    this.#logger.info(`Heartbeat interval is now ${this.#interval} s`, {
      source: schedule.intervalSource,
    });
  }
}

/**
 * Runs the heartbeat loop until shutdown (returns `"shutdown"`), for one attempt with `once`
 * (returns `"once"` or throws the {@linkcode PlatformError}), or until the platform rejects the
 * credential (throws {@linkcode CredentialRejectedError}). One timer and at most one request
 * exist at any time.
 */
export async function heartbeatLoop(deps: HeartbeatLoopDeps): Promise<LoopEnd> {
  const { schedule, logger, shutdown } = deps;
  const agentVersion = deps.agentVersion ?? VERSION;
  const status = StatusRecorder.over(deps.status, logger);
  const st = status.current;
  using pause = new Interruptible(shutdown, deps.timers);
  // After a crash the reservation may exceed what status says was sent: start past both. An
  // orderly stop (shutdown, --once, rejection) hands the unused rest of the block back.
  let next = Math.max(st.sequence, st.sequence_reserved) + 1;
  let conflictRetried = false;
  const hostDelta = new HostDelta(deps.digest);
  // Set when the platform refused a digest-only beat despite advertising `host_digest`: from then
  // on every beat of this process carries `host`, so one refusal can never repeat.
  let digestRefused = false;
  const digestOnly = () =>
    !digestRefused && (st.platform_features ?? []).includes(FEATURE_HOST_DIGEST);
  const notes = new LoopNotes(logger, schedule, digestOnly());

  st.stopped = null;
  while (!shutdown.aborted) {
    if (deps.beforeAttempt) {
      await deps.beforeAttempt(shutdown);
      if (shutdown.aborted) break;
    }
    const startedMono = deps.monotonicMs();
    const sequence = next;
    if (sequence > st.sequence_reserved) {
      st.sequence_reserved = sequence + SEQUENCE_RESERVATION_BLOCK - 1;
      await status.save();
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
      sent_at: isoTime(deps.wallMs()),
      agent_version: agentVersion,
      ...inventory,
      metrics: snap.metrics,
      ...(gap === undefined ? {} : { gap }),
      ...(clockOffset === undefined ? {} : { clock_offset: clockOffset }),
    };
    st.last_attempt_at = body.sent_at;
    const answer = await pause.send((signal) => deps.send(body, signal));
    st.sequence = sequence;
    next = sequence + 1;
    if (shutdown.aborted) break;
    const carriedHost = "host" in body && body.host !== undefined;
    const outcome = classifyOutcome(answer, { carriedHost, digestRefused, conflictRetried });
    if (outcome.kind === "accepted") st.heartbeats_sent_total = (st.heartbeats_sent_total ?? 0) + 1;
    else st.heartbeats_failed_total = (st.heartbeats_failed_total ?? 0) + 1;
    if (outcome.kind !== "host_refused") conflictRetried = outcome.kind === "conflict";

    // Seconds until the next attempt; none (at once) after a refused digest or a conflict.
    let delaySeconds: number | undefined;
    switch (outcome.kind) {
      case "accepted": {
        const response = outcome.response;
        hostDelta.accepted(carriedHost, response.host_required === true);
        // The platform's last word on what it supports; a v1.0 platform's answers have none.
        st.platform_features = response.features ?? [];
        notes.digestOnly(digestOnly());
        notes.hint(response.next_heartbeat_seconds);
        const recovery = {
          from: st.consecutive_failures,
          since: st.failing_since,
          gapReported: gap !== undefined,
        };
        // Measured from the attempt's start, so request time does not stretch the interval.
        delaySeconds = Math.max(
          0,
          schedule.afterSuccess() - (deps.monotonicMs() - startedMono) / 1000,
        );
        status.succeeded(deps.wallMs());
        notes.accepted(sequence, deps.monotonicMs(), recovery);
        notes.interval();
        break;
      }
      case "host_refused":
        // Contract v1.3: a platform that refuses a beat without `host` gets the full one at once
        // (new sequence: the refused one may have been recorded) and on every later beat.
        digestRefused = true;
        notes.digestRefused();
        logger.warn(
          `Platform refused a heartbeat without host (${outcome.failure.message}); sending the full host on every heartbeat of this process`,
        );
        break;
      case "rejected": {
        const message = rejectionMessage(outcome.failure);
        status.failed(statusErrorOf(outcome.failure));
        status.idle();
        await status.stopped("credential_rejected", message, deps.wallMs());
        throw new CredentialRejectedError(message, { cause: outcome.failure });
      }
      case "conflict":
        // The platform saw a later sequence (status lost or restored from a backup): continue
        // after it at once, once; a second conflict in a row backs off like any failure.
        next = Math.max(next, outcome.lastSequence + 1);
        logger.info(`Platform has seen sequence ${next - 1}; continuing from ${next}`);
        break;
      case "retry": {
        const { failure, lastSequence } = outcome;
        if (lastSequence !== undefined) next = Math.max(next, lastSequence + 1);
        delaySeconds = schedule.afterFailure(failure.retryAfterSeconds);
        status.failed(statusErrorOf(failure));
        const retryIn = deps.once ? undefined : Math.round(delaySeconds * 10) / 10;
        notes.failed(startedMono, failure, st.failing_since, retryIn);
        break;
      }
    }

    st.interval_seconds = schedule.intervalSeconds;
    const failure = outcome.kind === "accepted" ? undefined : outcome.failure;
    if (deps.once && delaySeconds !== undefined) {
      status.idle();
      await status.save();
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
    const delayMs = Math.round((delaySeconds ?? 0) * 1000);
    st.next_attempt_at = isoTime(deps.wallMs() + delayMs);
    await status.save();
    if (logger.enabled("debug")) {
      logger.debug(failure === undefined ? "Heartbeat sent" : "Heartbeat failed", {
        sequence,
        error: failure?.message,
        next_in_seconds: delayMs / 1000,
      });
    }
    if (delaySeconds !== undefined) await pause.wait(delayMs);
  }
  status.idle();
  await status.stopped(
    "shutdown",
    shutdown.reason instanceof Error ? shutdown.reason.message : "stopped",
    deps.wallMs(),
  );
  logger.info("Stopped", { sequence: st.sequence });
  return "shutdown";
}
