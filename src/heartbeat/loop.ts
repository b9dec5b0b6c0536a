/**
 * The heartbeat loop: one attempt at a time, each outcome classified once (accepted, host refused,
 * rejected, conflict, retry), status recorded through one {@linkcode StatusRecorder}.
 */
import { clockOffsetReport } from "../wire/clock_offset.ts";
import {
  FEATURE_HOST_DIGEST,
  type HeartbeatBody,
  type HeartbeatResponse,
} from "../wire/contract.ts";
import { CredentialRejectedError, PlatformError } from "../errors.ts";
import { HostDelta } from "./host_delta.ts";
import { Interruptible, type Timers } from "./interruptible.ts";
import type { Logger } from "../log.ts";
import { LoopNotes } from "./loop_notes.ts";
import { outageGap } from "./outage_gap.ts";
import { classifyOutcome, type Outcome, rejectionMessage, statusErrorOf } from "./outcome.ts";
import type { HeartbeatSchedule } from "./schedule.ts";
import { StatusRecorder, type StatusSink } from "../state/status_recorder.ts";
import type { AgentStatus } from "../state/status_store.ts";
import type { Host, Metrics } from "../wire/telemetry_wire.ts";
import { VERSION } from "../version.ts";
import { isoTime } from "../iso_time.ts";

/**
 * Sequence numbers reserved per fsync'd status write: a crash can skip up to this many numbers
 * but never reuse one, and a healthy agent pays the reservation write once per this many beats.
 */
export const SEQUENCE_RESERVATION_BLOCK = 100;

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
   * {@linkcode HostDelta} uses. Tests pass one that records what was hashed.
   */
  digest?: (text: string) => Promise<string>;
}

/** How the loop ended when it did not throw. */
export type LoopEnd = "shutdown" | "once";

/** One heartbeat ready to go out. */
interface Beat {
  sequence: number;
  /** Monotonic start of the attempt: the next wait is measured from it. */
  startedMono: number;
  body: HeartbeatBody;
  /** The body carries the full `host`. */
  carriedHost: boolean;
  /** The body carries `gap` (the recovery line says so). */
  gapReported: boolean;
}

/**
 * What the loop keeps from one attempt to the next (the next sequence, the digest mode, the
 * conflict retry) and the steps of one attempt, in the order {@linkcode heartbeatLoop} runs them.
 */
class HeartbeatAttempts {
  readonly #deps: HeartbeatLoopDeps;
  readonly #pause: Interruptible;
  readonly #status: StatusRecorder;
  readonly #st: AgentStatus;
  readonly #hostDelta: HostDelta;
  readonly #notes: LoopNotes;
  #next: number;
  #conflictRetried = false;
  // Set when the platform refused a digest-only beat despite advertising `host_digest`: from then
  // on every beat of this process carries `host`, so one refusal can never repeat.
  #digestRefused = false;

  constructor(deps: HeartbeatLoopDeps, pause: Interruptible) {
    this.#deps = deps;
    this.#pause = pause;
    this.#status = StatusRecorder.over(deps.status, deps.logger);
    this.#st = this.#status.current;
    // After a crash the reservation may exceed what status says was sent: start past both. An
    // orderly stop (shutdown, --once, rejection) hands the unused rest of the block back.
    this.#next = Math.max(this.#st.sequence, this.#st.sequence_reserved) + 1;
    this.#hostDelta = new HostDelta(deps.digest);
    this.#notes = new LoopNotes(deps.logger, deps.schedule, this.#digestOnly());
    this.#st.stopped = null;
  }

  #digestOnly(): boolean {
    const features = this.#st.platform_features ?? [];
    return !this.#digestRefused && features.includes(FEATURE_HOST_DIGEST);
  }

  /**
   * Runs `beforeAttempt`, reserves the sequence and takes a snapshot: the next beat, or undefined
   * when shutdown came first.
   */
  async prepare(): Promise<Beat | undefined> {
    const { beforeAttempt, shutdown } = this.#deps;
    if (beforeAttempt) {
      await beforeAttempt(shutdown);
      if (shutdown.aborted) return undefined;
    }
    const startedMono = this.#deps.monotonicMs();
    const sequence = this.#next;
    if (sequence > this.#st.sequence_reserved) await this.#reserve(sequence);
    const snap = await this.#deps.snapshot();
    const inventory = await this.#hostDelta.fields(snap.host, this.#digestOnly());
    if (shutdown.aborted) return undefined;
    // Outage evidence (contract v1.3): from status.json, so a restart keeps it.
    const gap = outageGap(this.#st);
    const clockOffset = clockOffsetReport(this.#st);
    const body: HeartbeatBody = {
      agent_id: this.#deps.agentId,
      sequence,
      sent_at: isoTime(this.#deps.wallMs()),
      agent_version: this.#deps.agentVersion ?? VERSION,
      ...inventory,
      metrics: snap.metrics,
      ...(gap === undefined ? {} : { gap }),
      ...(clockOffset === undefined ? {} : { clock_offset: clockOffset }),
    };
    this.#st.last_attempt_at = body.sent_at;
    const carriedHost = "host" in body && body.host !== undefined;
    return { sequence, startedMono, body, carriedHost, gapReported: gap !== undefined };
  }

  /** Saves a new block of sequence numbers before the first of them goes out. */
  async #reserve(sequence: number): Promise<void> {
    this.#st.sequence_reserved = sequence + SEQUENCE_RESERVATION_BLOCK - 1;
    await this.#status.save();
  }

  /** Sends `beat` and classifies the answer; undefined when shutdown cut it short. */
  async send(beat: Beat): Promise<Outcome | undefined> {
    const st = this.#st;
    const answer = await this.#pause.send((signal) => this.#deps.send(beat.body, signal));
    st.sequence = beat.sequence;
    this.#next = beat.sequence + 1;
    if (this.#deps.shutdown.aborted) return undefined;
    const outcome = classifyOutcome(answer, {
      carriedHost: beat.carriedHost,
      digestRefused: this.#digestRefused,
      conflictRetried: this.#conflictRetried,
    });
    if (outcome.kind === "accepted") st.heartbeats_sent_total = (st.heartbeats_sent_total ?? 0) + 1;
    else st.heartbeats_failed_total = (st.heartbeats_failed_total ?? 0) + 1;
    if (outcome.kind !== "host_refused") this.#conflictRetried = outcome.kind === "conflict";
    return outcome;
  }

  /**
   * Acts on `outcome`: seconds until the next attempt, none (at once) after a refused digest or
   * a conflict. A rejection records the stop and throws {@linkcode CredentialRejectedError}.
   */
  async act(beat: Beat, outcome: Outcome): Promise<number | undefined> {
    let delaySeconds: number | undefined;
    switch (outcome.kind) {
      case "accepted":
        delaySeconds = this.#accepted(beat, outcome.response);
        break;
      case "host_refused":
        this.#hostRefused(outcome.failure);
        break;
      case "rejected":
        return await this.#rejected(outcome.failure);
      case "conflict":
        // The platform saw a later sequence (status lost or restored from a backup): continue
        // after it at once, once; a second conflict in a row backs off like any failure.
        this.#next = Math.max(this.#next, outcome.lastSequence + 1);
        this.#deps.logger.info(
          `Platform has seen sequence ${this.#next - 1}; continuing from ${this.#next}`,
        );
        break;
      case "retry":
        delaySeconds = this.#retry(beat, outcome.failure, outcome.lastSequence);
        break;
    }
    this.#st.interval_seconds = this.#deps.schedule.intervalSeconds;
    return delaySeconds;
  }

  #accepted(beat: Beat, response: HeartbeatResponse): number {
    const { schedule, monotonicMs } = this.#deps;
    const st = this.#st;
    this.#hostDelta.accepted(beat.carriedHost, response.host_required === true);
    // The platform's last word on what it supports; a v1.0 platform's answers have none.
    st.platform_features = response.features ?? [];
    this.#notes.digestOnly(this.#digestOnly());
    this.#notes.hint(response.next_heartbeat_seconds);
    const recovery = {
      from: st.consecutive_failures,
      since: st.failing_since,
      gapReported: beat.gapReported,
    };
    // Measured from the attempt's start, so request time does not stretch the interval.
    const delaySeconds = Math.max(
      0,
      schedule.afterSuccess() - (monotonicMs() - beat.startedMono) / 1000,
    );
    this.#status.succeeded(this.#deps.wallMs());
    this.#notes.accepted(beat.sequence, monotonicMs(), recovery);
    this.#notes.interval();
    return delaySeconds;
  }

  #hostRefused(failure: PlatformError): void {
    // Contract v1.3: a platform that refuses a beat without `host` gets the full one at once
    // (new sequence: the refused one may have been recorded) and on every later beat.
    this.#digestRefused = true;
    this.#notes.digestRefused();
    this.#deps.logger.warn(
      `Platform refused a heartbeat without host (${failure.message}); sending the full host on every heartbeat of this process`,
    );
  }

  async #rejected(failure: PlatformError): Promise<never> {
    const message = rejectionMessage(failure);
    this.#status.failed(statusErrorOf(failure));
    this.#status.idle();
    await this.#status.stopped("credential_rejected", message, this.#deps.wallMs());
    throw new CredentialRejectedError(message, { cause: failure });
  }

  #retry(beat: Beat, failure: PlatformError, lastSequence: number | undefined): number {
    if (lastSequence !== undefined) this.#next = Math.max(this.#next, lastSequence + 1);
    const delaySeconds = this.#deps.schedule.afterFailure(failure.retryAfterSeconds);
    this.#status.failed(statusErrorOf(failure));
    const retryIn = this.#deps.once ? undefined : Math.round(delaySeconds * 10) / 10;
    this.#notes.failed(failure, {
      startedMono: beat.startedMono,
      failingSince: this.#st.failing_since,
      retryInSeconds: retryIn,
    });
    return delaySeconds;
  }

  /** Ends a `once` run: records it, then returns, or throws the attempt's failure. */
  async endOnce(failure: PlatformError | undefined): Promise<"once"> {
    this.#status.idle();
    await this.#status.save();
    if (failure === undefined) return "once";
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

  /** Records when the next attempt is due, then waits for it (none: at once) or for shutdown. */
  async waitForNext(
    sequence: number,
    failure: PlatformError | undefined,
    delaySeconds: number | undefined,
  ): Promise<void> {
    const { logger, wallMs } = this.#deps;
    const delayMs = Math.round((delaySeconds ?? 0) * 1000);
    this.#st.next_attempt_at = isoTime(wallMs() + delayMs);
    await this.#status.save();
    if (logger.enabled("debug")) {
      logger.debug(failure === undefined ? "Heartbeat sent" : "Heartbeat failed", {
        sequence,
        error: failure?.message,
        next_in_seconds: delayMs / 1000,
      });
    }
    if (delaySeconds !== undefined) await this.#pause.wait(delayMs);
  }

  /** Records the stop that shutdown asked for. */
  async stopped(): Promise<"shutdown"> {
    const { shutdown, wallMs } = this.#deps;
    this.#status.idle();
    await this.#status.stopped(
      "shutdown",
      shutdown.reason instanceof Error ? shutdown.reason.message : "stopped",
      wallMs(),
    );
    this.#deps.logger.info("Stopped", { sequence: this.#st.sequence });
    return "shutdown";
  }
}

/**
 * Runs the heartbeat loop until shutdown (returns `"shutdown"`), for one attempt with `once`
 * (returns `"once"` or throws the {@linkcode PlatformError}), or until the platform rejects the
 * credential (throws {@linkcode CredentialRejectedError}). One timer and at most one request
 * exist at any time.
 */
export async function heartbeatLoop(deps: HeartbeatLoopDeps): Promise<LoopEnd> {
  using pause = new Interruptible(deps.shutdown, deps.timers);
  const attempts = new HeartbeatAttempts(deps, pause);
  while (!deps.shutdown.aborted) {
    const beat = await attempts.prepare();
    if (beat === undefined) break;
    const outcome = await attempts.send(beat);
    if (outcome === undefined) break;
    const delaySeconds = await attempts.act(beat, outcome);
    const failure = outcome.kind === "accepted" ? undefined : outcome.failure;
    if (deps.once && delaySeconds !== undefined) return await attempts.endOnce(failure);
    await attempts.waitForNext(beat.sequence, failure, delaySeconds);
  }
  return await attempts.stopped();
}
