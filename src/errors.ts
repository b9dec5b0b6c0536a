/** Documented process exit codes; `src/main.ts` is the only place that turns them into an exit. */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  credentialRejected: 3,
  unreachable: 4,
  notEnrolled: 5,
  alreadyEnrolled: 6,
  busy: 7,
  /** `status --health`: the agent runs, but its heartbeats are failing. */
  failing: 8,
  /** `status --health`: enrolled, but no `run` process is running. */
  notRunning: 9,
  /** 128 + SIGINT (2), as shells report a process stopped by Ctrl-C. */
  interrupted: 130,
  /** 128 + SIGTERM (15). */
  terminated: 143,
} as const;

/** One of the documented exit codes. */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

/** What each exit code means: the one table `--help` (and the README) show. */
export const EXIT_CODE_MEANINGS: readonly (readonly [ExitCode, string])[] = [
  [ExitCode.ok, "ok"],
  [ExitCode.internal, "internal error"],
  [
    ExitCode.usage,
    "usage or configuration error (bad flag, bad URL, unreadable, corrupt or insecure local state,\n" +
    "or TLS trust that cannot be limited to the pinned CAs)",
  ],
  [
    ExitCode.credentialRejected,
    "the platform rejected the credential (token invalid/expired/used, credential revoked,\n" +
    "agent removed, identity cloned): an operator must act",
  ],
  [ExitCode.unreachable, "the platform could not be reached or kept failing"],
  [ExitCode.notEnrolled, "not enrolled"],
  [
    ExitCode.alreadyEnrolled,
    "already enrolled with another platform (enroll without --force; to the same platform\n" +
    "enroll succeeds: already enrolled as <id>)",
  ],
  [
    ExitCode.busy,
    "another oneconnect-agent process holds the identity (e.g. renew while the service runs)",
  ],
  [ExitCode.failing, "status --health: the agent runs, but its heartbeats are failing"],
  [ExitCode.notRunning, "status --health: enrolled, but the agent is not running"],
  [
    ExitCode.interrupted,
    "interrupted by SIGINT (Ctrl-C) or SIGBREAK before finishing (enroll, unenroll; a stopped\n" +
    "run exits 0)",
  ],
  [ExitCode.terminated, "stopped by SIGTERM before finishing (enroll, unenroll)"],
];

/** Base of every error the agent reports on purpose: a one-line message and an exit code. */
export class AgentError extends Error {
  /** The process exit code this error maps to. */
  readonly exitCode: ExitCode;

  constructor(message: string, exitCode: ExitCode = ExitCode.internal, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** The reason `src/main.ts` aborts the shutdown signal with: the signal that asked us to stop. */
export class ShutdownRequest extends Error {
  constructor(readonly signal: string) {
    super(`received ${signal}`);
    this.name = "ShutdownRequest";
  }
}

/** A one-off command cut short by a signal: exit 143 for SIGTERM, else 130. */
export class InterruptedError extends AgentError {
  /** `reason` is the shutdown signal's abort reason. */
  constructor(message: string, reason: unknown, options?: ErrorOptions) {
    super(
      message,
      reason instanceof ShutdownRequest && reason.signal === "SIGTERM"
        ? ExitCode.terminated
        : ExitCode.interrupted,
      options,
    );
  }
}

/** Bad flag, bad configuration value, or unreadable, corrupt or insecure local state (exit 2). */
export class UsageError extends AgentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.usage, options);
  }
}

/** The platform rejected the credential or the agent is gone: an operator must act (exit 3). */
export class CredentialRejectedError extends AgentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.credentialRejected, options);
  }
}

/** The agent holds no identity in its state directory (exit 5). */
export class NotEnrolledError extends AgentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.notEnrolled, options);
  }
}

/** `enroll` found an identity and `--force` was not given (exit 6). */
export class AlreadyEnrolledError extends AgentError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.alreadyEnrolled, options);
  }
}

/**
 * The fixed set of ways talking to the platform can fail (also the `gap.last_error.kind` values
 * of contract v1.3).
 */
export const PLATFORM_ERROR_KINDS = [
  "network",
  "dns",
  "tls",
  "timeout",
  "aborted",
  "http",
  "redirect",
  "response_too_large",
  "invalid_response",
] as const;

/** What went wrong talking to the platform, as the heartbeat and enrollment logic sees it. */
export type PlatformErrorKind = typeof PLATFORM_ERROR_KINDS[number];

/** Details of a failed platform request. */
export interface PlatformErrorDetails {
  kind: PlatformErrorKind;
  httpStatus?: number;
  /** The problem `code` from an RFC 9457 body, when the platform sent one. */
  code?: string;
  /** The problem `detail`, already stripped of secrets. */
  detail?: string;
  /** Seconds to wait before the next attempt, from `Retry-After`, when the platform sent one. */
  retryAfterSeconds?: number;
  /** Extra problem fields the caller may act on (e.g. `last_sequence`). */
  problem?: Record<string, unknown>;
  /** Media type of the error answer (`application/problem+json` for a problem document). */
  contentType?: string;
}

/** A request to the platform failed (exit 4 unless a caller turns it into a rejection). */
export class PlatformError extends AgentError {
  readonly kind: PlatformErrorKind;
  readonly httpStatus?: number;
  readonly code?: string;
  readonly detail?: string;
  readonly retryAfterSeconds?: number;
  readonly problem?: Record<string, unknown>;
  readonly contentType?: string;

  constructor(message: string, details: PlatformErrorDetails, options?: ErrorOptions) {
    super(message, ExitCode.unreachable, options);
    this.kind = details.kind;
    this.httpStatus = details.httpStatus;
    this.code = details.code;
    this.detail = details.detail;
    this.retryAfterSeconds = details.retryAfterSeconds;
    this.problem = details.problem;
    this.contentType = details.contentType;
  }
}

/**
 * The machine-readable facts of a failure, as log fields (`--log-format json` makes them keys):
 * its kind, HTTP status, problem code and retry delay; absent ones are left out.
 */
export function failureFields(error: unknown): Record<string, string | number> {
  const fields: Record<string, string | number | undefined> = error instanceof PlatformError
    ? {
      kind: error.kind,
      http_status: error.httpStatus,
      code: error.code,
      retry_after_seconds: error.retryAfterSeconds,
    }
    : {};
  return Object.fromEntries(
    Object.entries(fields).filter(([, v]) => v !== undefined),
  ) as Record<string, string | number>;
}

/**
 * The message of anything thrown, on one line (error text ends up in one-line log records and
 * errors); with `withCause`, the message of an `Error` cause is appended.
 */
export function errorMessage(error: unknown, withCause = false): string {
  const text = error instanceof Error ? error.message : String(error);
  const cause = withCause && error instanceof Error && error.cause instanceof Error
    ? ` ${error.cause.message}`
    : "";
  return `${text}${cause}`.replace(/\s+/g, " ").trim();
}
