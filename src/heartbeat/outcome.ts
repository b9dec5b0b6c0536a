/**
 * What one heartbeat attempt amounted to, decided once so that the loop only acts on it: accepted,
 * refused for lack of `host`, a credential rejection, a sequence conflict, or a failure to retry.
 */
import type { HeartbeatResponse } from "../wire/contract.ts";
import { isCredentialRejection } from "../wire/contract.ts";
import { PlatformError } from "../errors.ts";
import type { StatusError } from "../state/status_store.ts";

/** The outcome of one heartbeat attempt. */
export type Outcome =
  | { kind: "accepted"; response: HeartbeatResponse }
  /** A beat without `host` refused (400/422): resend at once with `host` (contract v1.3). */
  | { kind: "host_refused"; failure: PlatformError }
  /** The platform no longer accepts this agent's credential: the loop stops. */
  | { kind: "rejected"; failure: PlatformError }
  /** The first 409 `sequence_conflict` in a row: continue after `lastSequence` at once. */
  | { kind: "conflict"; failure: PlatformError; lastSequence: number }
  /** Any other failure: back off; `lastSequence` of a repeated conflict still moves on. */
  | { kind: "retry"; failure: PlatformError; lastSequence?: number };

/** What the loop knew about the attempt, besides its answer. */
export interface AttemptFacts {
  /** The beat carried the full `host`. */
  carriedHost: boolean;
  /** A beat without `host` was already refused in this process. */
  digestRefused: boolean;
  /** The previous attempt was the prompt retry after a sequence conflict. */
  conflictRetried: boolean;
}

/** The send's rejection as a {@linkcode PlatformError} (anything else is an invalid response). */
function platformErrorOf(error: unknown): PlatformError {
  if (error instanceof PlatformError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new PlatformError(`unexpected error: ${message}`, { kind: "invalid_response" }, {
    cause: error,
  });
}

/** `last_sequence` of a 409 `sequence_conflict`, when the platform sent a usable one. */
export function conflictSequence(error: PlatformError): number | undefined {
  if (error.httpStatus !== 409 || error.code !== "sequence_conflict") return undefined;
  const last = error.problem?.last_sequence;
  return typeof last === "number" && Number.isSafeInteger(last) && last >= 0 ? last : undefined;
}

/** Classifies an attempt: its answer, or the error its send rejected with. */
export function classifyOutcome(
  answer: { response: HeartbeatResponse } | { error: unknown },
  facts: AttemptFacts,
): Outcome {
  if ("response" in answer) return { kind: "accepted", response: answer.response };
  const failure = platformErrorOf(answer.error);
  if (
    !facts.carriedHost && !facts.digestRefused &&
    (failure.httpStatus === 400 || failure.httpStatus === 422)
  ) {
    return { kind: "host_refused", failure };
  }
  if (isCredentialRejection(failure)) return { kind: "rejected", failure };
  const lastSequence = conflictSequence(failure);
  if (lastSequence !== undefined && !facts.conflictRetried) {
    return { kind: "conflict", failure, lastSequence };
  }
  return lastSequence === undefined
    ? { kind: "retry", failure }
    : { kind: "retry", failure, lastSequence };
}

/** The single-line message of a credential rejection, with what to do. */
export function rejectionMessage(error: PlatformError): string {
  const why = error.code === "agent_mismatch"
    ? "the platform says this credential belongs to another agent"
    : error.code === "agent_unknown"
    ? "the platform no longer knows this agent"
    : "the platform no longer accepts this agent's credential";
  return `Cannot send heartbeat: ${error.message}; ${why}: re-enroll with "oneconnect-agent enroll --force"`;
}

/** A failure as `status.json` records it (`last_error`). */
export function statusErrorOf(error: PlatformError): StatusError {
  return {
    kind: error.kind,
    http_status: error.httpStatus ?? null,
    code: error.code ?? null,
    message: error.message,
  };
}
