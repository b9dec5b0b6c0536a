import * as z from "../zod.ts";
import { PLATFORM_ERROR_KINDS, UsageError } from "../errors.ts";
import { HostSchema, MetricsSchema } from "./telemetry_wire.ts";

/**
 * Agent ids the platform may issue (contract v1.3): a letter or digit first, so `.`, `..` and
 * `-option` can never become a path segment, a file name or an argument.
 */
const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** An agent id (see {@linkcode AGENT_ID_PATTERN}). */
export const AgentIdSchema = z.string().check(z.regex(AGENT_ID_PATTERN));

/**
 * `api/v1/agents/<id><suffix>`; an id that could act as a path segment (`.`, `..`) never gets
 * this far (the identity is validated on load), and is refused here too rather than sent.
 */
export function agentPath(agentId: string, suffix: string): string {
  if (!AGENT_ID_PATTERN.test(agentId)) {
    throw new UsageError(
      `Refusing agent id ${
        JSON.stringify(agentId)
      }: it must start with a letter or digit; re-enroll with "oneconnect-agent enroll --force"`,
    );
  }
  return `api/v1/agents/${encodeURIComponent(agentId)}${suffix}`;
}

/** RFC 9457 problem body; unknown fields are kept so callers can act on extensions. */
export const ProblemSchema = z.looseObject({
  type: z.optional(z.string()),
  title: z.optional(z.string()),
  status: z.optional(z.int()),
  detail: z.optional(z.string()),
  code: z.optional(z.string()),
});

/** `POST /api/v1/agents/enroll` request. */
export const EnrollRequestSchema = z.object({
  enrollment_token: z.string().check(z.minLength(1)),
  csr: z.string().check(z.minLength(1)),
  host: HostSchema,
  agent_version: z.string().check(z.minLength(1)),
});
/** Enrollment request body. */
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

/**
 * `features` of an enrollment or heartbeat answer (contract v1.3): what the platform supports
 * beyond v1.0. Entries this agent does not know are kept and ignored; an answer without the member
 * advertises nothing.
 */
const FeaturesSchema = z.array(z.string());

/** Feature: the platform accepts heartbeats without `host` (the inventory delta). */
export const FEATURE_HOST_DIGEST = "host_digest";

/** Feature: the platform accepts `gap` (outage evidence) in heartbeats. */
export const FEATURE_GAP = "gap";

/** Feature: the platform accepts `clock_offset` (its clock against the host's) in heartbeats. */
export const FEATURE_CLOCK_OFFSET = "clock_offset";

/**
 * Problem codes with which the platform rejects a credential (contract v1.3 lists them): only an
 * `application/problem+json` answer carrying one of these stops `run`, `renew` or `unenroll` as a
 * rejection. Any other 401/403/404/410 (an edge's HTML page, plain JSON, an unknown code) is a
 * failed attempt.
 */
export const REJECTION_CODES: ReadonlySet<string> = new Set([
  "credential_revoked",
  "credential_invalid",
  "agent_mismatch",
  "agent_unknown",
]);

/** HTTP statuses at which the platform may reject a credential (with a REJECTION_CODES code). */
export const REJECTION_STATUSES: ReadonlySet<number> = new Set([401, 403, 404, 410]);

/**
 * Problem codes with which the platform refuses an enrollment token (contract v1.3): only an
 * `application/problem+json` 401/409 carrying one of these stops `enroll` with exit 3; any other
 * 401/409 is a failed attempt, retried within `--timeout`.
 */
export const ENROLLMENT_REJECTION_CODES: ReadonlySet<string> = new Set([
  "enrollment_token_invalid",
  "enrollment_token_consumed",
]);

/** HTTP statuses at which the platform refuses an enrollment token. */
export const ENROLLMENT_REJECTION_STATUSES: ReadonlySet<number> = new Set([401, 409]);

/** Media type of RFC 9457 problem documents. */
const PROBLEM_MEDIA_TYPE = "application/problem+json";

/** The parts of a failed answer the rejection rules look at. */
export interface FailedAnswer {
  httpStatus?: number;
  code?: string;
  contentType?: string;
}

function isProblemWith(
  answer: FailedAnswer,
  statuses: ReadonlySet<number>,
  codes: ReadonlySet<string>,
): boolean {
  return answer.httpStatus !== undefined && statuses.has(answer.httpStatus) &&
    answer.contentType === PROBLEM_MEDIA_TYPE && answer.code !== undefined &&
    codes.has(answer.code);
}

/** Whether a failed answer is the platform rejecting the credential (see REJECTION_CODES). */
export function isCredentialRejection(answer: FailedAnswer): boolean {
  return isProblemWith(answer, REJECTION_STATUSES, REJECTION_CODES);
}

/** Whether a failed answer is the platform refusing the enrollment token. */
export function isEnrollmentRejection(answer: FailedAnswer): boolean {
  return isProblemWith(answer, ENROLLMENT_REJECTION_STATUSES, ENROLLMENT_REJECTION_CODES);
}

/**
 * A note for an answer at a rejection status that is no platform rejection (an edge's page, plain
 * JSON, an unknown code), naming its content type and what the agent does: `` ("text/html", not
 * a platform rejection: retrying)``; empty for other statuses.
 */
export function notRejectedNote(
  answer: FailedAnswer,
  statuses: ReadonlySet<number>,
  outcome = "retrying",
): string {
  if (answer.httpStatus === undefined || !statuses.has(answer.httpStatus)) return "";
  const type = answer.contentType === undefined
    ? "no content type"
    : JSON.stringify(answer.contentType);
  return ` (${type}, not a platform rejection: ${outcome})`;
}

/** `POST /api/v1/agents/enroll` 201 response. */
export const EnrollResponseSchema = z.object({
  agent_id: AgentIdSchema,
  certificate: z.string().check(z.minLength(1)),
  ca_certificates: z.array(z.string().check(z.minLength(1))).check(z.minLength(1)),
  service_account_token: z.string().check(z.minLength(1)),
  heartbeat_interval_seconds: z.optional(z.int().check(z.gte(10), z.lte(86400))),
  features: z.optional(FeaturesSchema),
});
/** Enrollment response body. */
export type EnrollResponse = z.infer<typeof EnrollResponseSchema>;

/** Lowercase hex SHA-256, as in `host_digest`. */
const Sha256HexSchema = z.string().check(z.regex(/^[0-9a-f]{64}$/));

/** `gap.last_error.kind`: the agent's own error kinds; `other` for one this version cannot name. */
export const GAP_ERROR_KINDS = [...PLATFORM_ERROR_KINDS, "other"] as const;

/** `gap.last_error.code`: a problem code the agent passes on only when it is this plain a token. */
export const GAP_CODE_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

/**
 * Outage evidence (contract v1.3, feature `gap`): carried by heartbeats after failed attempts,
 * until one is accepted. Kinds, statuses and codes only: never a message or other server text.
 */
export const GapSchema = z.object({
  /** `sent_at` of the first failed attempt. */
  since: z.iso.datetime({ offset: true }),
  /** Failed attempts since then, over restarts of the agent. */
  attempts: z.int().check(z.gte(1)),
  last_error: z.object({
    kind: z.enum(GAP_ERROR_KINDS),
    status: z.nullable(z.int().check(z.gte(100), z.lte(599))),
    code: z.nullable(z.string().check(z.regex(GAP_CODE_PATTERN))),
  }),
});
/** Outage evidence in a heartbeat. */
export type Gap = z.infer<typeof GapSchema>;

/**
 * The platform's clock minus this host's, in whole seconds (positive: the platform is ahead), as
 * measured from the `Date` header of an answer (contract v1.3, feature `clock_offset`).
 */
const ClockOffsetReportSchema = z.object({
  seconds: z.int(),
  measured_at: z.iso.datetime({ offset: true }),
});
/** A clock offset in a heartbeat. */
export type ClockOffsetReport = z.infer<typeof ClockOffsetReportSchema>;

/**
 * `POST /api/v1/agents/{agent_id}/heartbeats` request with the full `host`: the shape every v1
 * platform accepts (v1.0 requires `host`; `host_digest` is ignored by platforms before v1.2).
 */
export const HeartbeatRequestSchema = z.object({
  agent_id: AgentIdSchema,
  sequence: z.int().check(z.gte(1)),
  sent_at: z.iso.datetime({ offset: true }),
  agent_version: z.string().check(z.minLength(1)),
  host_digest: Sha256HexSchema,
  host: HostSchema,
  metrics: MetricsSchema,
  gap: z.optional(GapSchema),
  clock_offset: z.optional(ClockOffsetReportSchema),
});
/** Heartbeat request body with the full host. */
export type HeartbeatRequest = z.infer<typeof HeartbeatRequestSchema>;

/**
 * Digest-only heartbeat (inventory delta): no `host`, only its `host_digest`. Sent only to a
 * platform that advertised the `host_digest` feature.
 */
export const HeartbeatDigestRequestSchema = z.omit(HeartbeatRequestSchema, { host: true });
/** Digest-only heartbeat body. */
type HeartbeatDigestRequest = z.infer<typeof HeartbeatDigestRequestSchema>;

/** Either heartbeat body the agent may send: `host` present or not. */
export type HeartbeatBody = HeartbeatDigestRequest & { host?: HeartbeatRequest["host"] };

/**
 * Heartbeat 200 response. `next_heartbeat_seconds` is validated loosely here on purpose: the
 * heartbeat loop ignores a bad value with a warning instead of failing the whole heartbeat.
 * `host_required: true` asks for the full `host` on the next heartbeat; `features` is what the
 * platform supports (absent: nothing beyond v1.0).
 */
export const HeartbeatResponseSchema = z.looseObject({
  next_heartbeat_seconds: z.optional(z.unknown()),
  host_required: z.optional(z.boolean()),
  features: z.optional(FeaturesSchema),
});
/** Heartbeat response body. */
export type HeartbeatResponse = z.infer<typeof HeartbeatResponseSchema>;

/** `POST /api/v1/agents/{agent_id}/certificate` request (renewal with a new key pair). */
export const RenewRequestSchema = z.object({ csr: z.string().check(z.minLength(1)) });
/** Renewal request body. */
export type RenewRequest = z.infer<typeof RenewRequestSchema>;

/** Renewal 200 response. */
export const RenewResponseSchema = z.object({
  certificate: z.string().check(z.minLength(1)),
  ca_certificates: z.array(z.string().check(z.minLength(1))).check(z.minLength(1)),
  service_account_token: z.optional(z.string().check(z.minLength(1))),
});
/** Renewal response body. */
export type RenewResponse = z.infer<typeof RenewResponseSchema>;

/** `GET /api/v1/health` 200 response. */
export const HealthResponseSchema = z.object({
  status: z.literal("ok"),
  time: z.iso.datetime({ offset: true }),
});
/** Health response body. */
export type HealthResponse = z.infer<typeof HealthResponseSchema>;
