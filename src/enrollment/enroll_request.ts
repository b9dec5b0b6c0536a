/**
 * The enrollment request: one `POST api/v1/agents/enroll`, retried on network errors, 429 and 5xx
 * within the `--timeout` deadline; a contract rejection or an unusable answer ends it.
 */
import type { CommandContext } from "../config/context.ts";
import {
  ENROLLMENT_REJECTION_STATUSES,
  type EnrollRequest,
  type EnrollResponse,
  isEnrollmentRejection,
  notRejectedNote,
} from "../wire/contract.ts";
import { failureDelay } from "../platform/backoff.ts";
import {
  CredentialRejectedError,
  failureFields,
  InterruptedError,
  PlatformError,
} from "../errors.ts";

/** The one platform call enrollment makes (the PlatformClient, or a fake in unit tests). */
export interface EnrollClient {
  enroll(body: EnrollRequest, signal?: AbortSignal): Promise<EnrollResponse>;
  close(): void;
}

/** The seams the retries use. */
export interface RetryDeps {
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  random: () => number;
  /** Wall clock, ms: the retry deadline. */
  now: () => number;
}

/** Sleeps `ms`, rejecting with the abort reason as soon as `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function isRetryable(e: PlatformError): boolean {
  // A 401/409 that is no contract rejection (an edge's page, an unknown code) may pass.
  if (e.httpStatus !== undefined) {
    return e.httpStatus === 429 || e.httpStatus >= 500 ||
      ENROLLMENT_REJECTION_STATUSES.has(e.httpStatus);
  }
  return e.kind === "network" || e.kind === "dns" || e.kind === "timeout";
}

function describeAnswer(e: PlatformError): string {
  const code = e.code ? ` ${e.code}` : "";
  const detail = e.detail ? `: ${e.detail}` : "";
  return `platform answered ${e.httpStatus}${code}${detail}`;
}

/** What a failure after the platform accepted the token tells the operator. */
export const TOKEN_SPENT_HINT =
  "nothing was stored; the enrollment token is probably used up, so ask for a new one";

/**
 * Stopped by a signal once the token has gone out at least once: the platform may have accepted
 * it even though no answer arrived, so a retry's `enrollment_token_consumed` must not surprise.
 */
const INTERRUPTED_TOKEN_HINT =
  "nothing was stored, but the enrollment token may already be spent (it was sent); if a retry is answered 409 enrollment_token_consumed, ask for a new token";

function interrupted(shutdown: AbortSignal, cause: unknown): InterruptedError {
  return new InterruptedError(
    `Cannot enroll: interrupted; ${INTERRUPTED_TOKEN_HINT}`,
    shutdown.reason,
    {
      cause,
    },
  );
}

/** What {@linkcode requestWithRetries} sends, through which client, within what time. */
export interface EnrollmentSend {
  client: EnrollClient;
  body: EnrollRequest;
  /** `--timeout`: the whole budget of all attempts and waits, in seconds. */
  timeoutSeconds: number;
}

/** Sends the enrollment request, retrying network errors, 429 and 5xx within the deadline. */
export async function requestWithRetries(
  ctx: CommandContext,
  send: EnrollmentSend,
  deps: RetryDeps,
): Promise<EnrollResponse> {
  const { timeoutSeconds } = send;
  const deadline = deps.now() + timeoutSeconds * 1000;
  for (let attempt = 1;; attempt++) {
    const sent = await sendOnce(ctx, send, deadline - deps.now());
    if ("response" in sent) return sent.response;
    const { error } = sent;
    if (!(error instanceof PlatformError)) throw error;
    throwIfFinal(ctx, error, { attempt, outOfTime: sent.outOfTime, timeoutSeconds });
    const delaySeconds = retryDelay(error, { attempt, deadline, timeoutSeconds }, deps);
    ctx.logger.warn("Enrollment attempt failed; retrying", {
      attempt,
      retry_in_seconds: Math.round(delaySeconds * 10) / 10,
      error: `${error.message}${notRejectedNote(error, ENROLLMENT_REJECTION_STATUSES)}`,
      ...failureFields(error),
    });
    try {
      await deps.sleep(delaySeconds * 1000, ctx.shutdown);
    } catch {
      throw interrupted(ctx.shutdown, error);
    }
  }
}

/**
 * One attempt within `budgetMs`, cut short by shutdown: the answer, or the error and whether the
 * budget ran out.
 */
async function sendOnce(
  ctx: CommandContext,
  { client, body }: EnrollmentSend,
  budgetMs: number,
): Promise<{ response: EnrollResponse } | { error: unknown; outOfTime: boolean }> {
  const budget = new AbortController();
  const timer = setTimeout(
    () => budget.abort(new Error("enrollment timeout reached")),
    Math.max(0, budgetMs),
  );
  // A listener removed in `finally`, not AbortSignal.any over the process-long shutdown signal
  // (Deno #24842), as in the platform client.
  const request = new AbortController();
  const abortRequest = () => request.abort();
  ctx.shutdown.addEventListener("abort", abortRequest, { once: true });
  budget.signal.addEventListener("abort", abortRequest, { once: true });
  if (ctx.shutdown.aborted) request.abort();
  try {
    return { response: await client.enroll(body, request.signal) };
  } catch (error) {
    return { error, outOfTime: budget.signal.aborted };
  } finally {
    clearTimeout(timer);
    ctx.shutdown.removeEventListener("abort", abortRequest);
  }
}

/** What the retries have come to when an attempt fails. */
interface Progress {
  attempt: number;
  timeoutSeconds: number;
}

/**
 * Throws the error that ends enrollment after `failure`: a signal, a rejection of the token, the
 * budget spent, an unusable answer to a spent token, or a failure no retry can mend.
 */
function throwIfFinal(
  ctx: CommandContext,
  failure: PlatformError,
  { attempt, outOfTime, timeoutSeconds }: Progress & { outOfTime: boolean },
): void {
  if (ctx.shutdown.aborted) throw interrupted(ctx.shutdown, failure);
  if (isEnrollmentRejection(failure)) {
    throw new CredentialRejectedError(
      `Cannot enroll: ${describeAnswer(failure)}; ask for a new enrollment token`,
      { cause: failure },
    );
  }
  if (outOfTime) {
    throw gaveUp(failure, `gave up after ${timeoutSeconds} s (--timeout) and ${attempt} attempts`);
  }
  const unusable = failure.kind === "invalid_response" || failure.kind === "response_too_large";
  if (unusable && failure.httpStatus !== undefined && failure.httpStatus < 300) {
    // The platform said yes, so the token is likely spent even though the answer is unusable.
    throw new PlatformError(
      `Cannot enroll: refusing the platform's answer: ${failure.message}; ${TOKEN_SPENT_HINT}`,
      failure,
      { cause: failure },
    );
  }
  if (!isRetryable(failure)) {
    throw new PlatformError(`Cannot enroll: ${failure.message}`, failure, { cause: failure });
  }
}

/** Seconds to wait before the next attempt; throws when the wait would pass the deadline. */
function retryDelay(
  failure: PlatformError,
  { attempt, deadline, timeoutSeconds }: Progress & { deadline: number },
  deps: RetryDeps,
): number {
  const floor = failure.retryAfterSeconds ?? 0;
  const delaySeconds = failureDelay(attempt, deps.random, failure.retryAfterSeconds);
  const remainingSeconds = (deadline - deps.now()) / 1000;
  if (delaySeconds < remainingSeconds) return delaySeconds;
  throw gaveUp(
    failure,
    floor >= remainingSeconds
      ? `platform asked to retry after ${floor} s, beyond --timeout ${timeoutSeconds} s (${attempt} attempts)`
      : `gave up after ${timeoutSeconds} s (--timeout) and ${attempt} attempts`,
  );
}

function gaveUp(failure: PlatformError, why: string): PlatformError {
  return new PlatformError(
    `Cannot enroll: ${why}: ${failure.message}${
      notRejectedNote(failure, ENROLLMENT_REJECTION_STATUSES, "gave up")
    }`,
    failure,
    { cause: failure },
  );
}
