/**
 * The one writer of `status.json` for `run` and `renew`: the heartbeat loop and the renewal
 * scheduler record what happened through it, and a save never throws (heartbeats and renewals
 * matter more than the local record; the platform catches a reused sequence).
 */
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AgentStatus, RenewalStatus, StatusError } from "./status_store.ts";
import { isoTime } from "../iso_time.ts";

/** Where status is kept: the current value its writers mutate, and an atomic save. */
export interface StatusSink {
  current: AgentStatus;
  /** Persists `current` atomically; rejects when it cannot. */
  save(): Promise<void>;
}

/** Why the heartbeat loop stopped, as `stopped.reason` says. */
export type StopReason = "shutdown" | "credential_rejected" | "identity_cloned";

/**
 * Records status changes on a {@linkcode StatusSink} and saves it. A failed save is logged as a
 * warning once per run of failures, and the recovery once.
 */
export class StatusRecorder implements StatusSink {
  readonly #sink: StatusSink;
  readonly #logger: Logger;
  #failing = false;

  constructor(sink: StatusSink, logger: Logger) {
    this.#sink = sink;
    this.#logger = logger;
  }

  /** `sink` itself when it is a recorder already (its writers share one), else a new one. */
  static over(sink: StatusSink, logger: Logger): StatusRecorder {
    return sink instanceof StatusRecorder ? sink : new StatusRecorder(sink, logger);
  }

  /** The status being recorded. */
  get current(): AgentStatus {
    return this.#sink.current;
  }

  /** Saves the status; never throws. */
  async save(): Promise<void> {
    try {
      await this.#sink.save();
      if (this.#failing) this.#logger.info("Status file writable again");
      this.#failing = false;
    } catch (e) {
      if (!this.#failing) this.#logger.warn(`Cannot write status file: ${errorMessage(e)}`);
      this.#failing = true;
    }
  }

  /** An accepted heartbeat at `atMs`: the failure streak ends. */
  succeeded(atMs: number): void {
    const st = this.current;
    st.last_success_at = isoTime(atMs);
    st.consecutive_failures = 0;
    st.failing_since = null;
    st.last_error = null;
  }

  /** A failed heartbeat: the streak grows and starts at the last attempt if it is new. */
  failed(error: StatusError): void {
    const st = this.current;
    st.consecutive_failures++;
    st.failing_since ??= st.last_attempt_at;
    st.last_error = error;
  }

  /** No attempt is scheduled any more; the unused sequence reservation is handed back. */
  idle(): void {
    const st = this.current;
    st.next_attempt_at = null;
    st.sequence_reserved = st.sequence;
  }

  /** The loop stopped (or refused to start) at `atMs`, then saves. */
  async stopped(reason: StopReason, message: string, atMs: number): Promise<void> {
    const st = this.current;
    st.next_attempt_at = null;
    st.stopped = { at: isoTime(atMs), reason, message };
    await this.save();
  }

  /** The renewal state (saved with the next {@linkcode save}). */
  renewal(renewal: RenewalStatus): void {
    this.current.renewal = renewal;
  }
}
