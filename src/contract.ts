import { z } from "zod";
import { HostSchema, MetricsSchema } from "./telemetry.ts";

/**
 * Agent ids the platform may issue (contract v1.3): a letter or digit first, so `.`, `..` and
 * `-option` can never become a path segment, a file name or an argument.
 */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** An agent id (see {@linkcode AGENT_ID_PATTERN}). */
export const AgentIdSchema = z.string().regex(AGENT_ID_PATTERN);

/** RFC 9457 problem body; unknown fields are kept so callers can act on extensions. */
export const ProblemSchema = z.looseObject({
  type: z.string().optional(),
  title: z.string().optional(),
  status: z.number().int().optional(),
  detail: z.string().optional(),
  code: z.string().optional(),
});
/** A problem document. */
export type Problem = z.infer<typeof ProblemSchema>;

/** `POST /api/v1/agents/enroll` request. */
export const EnrollRequestSchema = z.object({
  enrollment_token: z.string().min(1),
  csr: z.string().min(1),
  host: HostSchema,
  agent_version: z.string().min(1),
});
/** Enrollment request body. */
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

/** `POST /api/v1/agents/enroll` 201 response. */
export const EnrollResponseSchema = z.object({
  agent_id: AgentIdSchema,
  certificate: z.string().min(1),
  ca_certificates: z.array(z.string().min(1)).min(1),
  service_account_token: z.string().min(1),
  heartbeat_interval_seconds: z.number().int().min(10).max(86400).optional(),
});
/** Enrollment response body. */
export type EnrollResponse = z.infer<typeof EnrollResponseSchema>;

/** Lowercase hex SHA-256, as in `host_digest`. */
export const Sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * `POST /api/v1/agents/{agent_id}/heartbeats` request. Inventory delta: `host_digest` is the
 * SHA-256 of `JSON.stringify(host)`; `host` itself is sent only on the first beat of a process,
 * when it changed since the platform last acknowledged it, or when the platform asked for it.
 */
export const HeartbeatRequestSchema = z.object({
  agent_id: AgentIdSchema,
  sequence: z.number().int().min(1),
  sent_at: z.iso.datetime({ offset: true }),
  agent_version: z.string().min(1),
  host_digest: Sha256HexSchema,
  host: HostSchema.optional(),
  metrics: MetricsSchema,
});
/** Heartbeat request body. */
export type HeartbeatRequest = z.infer<typeof HeartbeatRequestSchema>;

/**
 * Heartbeat 200 response. `next_heartbeat_seconds` is validated loosely here on purpose: the
 * heartbeat loop ignores a bad value with a warning instead of failing the whole heartbeat.
 * `host_required: true` asks for the full `host` on the next heartbeat.
 */
export const HeartbeatResponseSchema = z.looseObject({
  next_heartbeat_seconds: z.unknown().optional(),
  host_required: z.boolean().optional(),
});
/** Heartbeat response body. */
export type HeartbeatResponse = z.infer<typeof HeartbeatResponseSchema>;

/** `POST /api/v1/agents/{agent_id}/certificate` request (renewal with a new key pair). */
export const RenewRequestSchema = z.object({ csr: z.string().min(1) });
/** Renewal request body. */
export type RenewRequest = z.infer<typeof RenewRequestSchema>;

/** Renewal 200 response. */
export const RenewResponseSchema = z.object({
  certificate: z.string().min(1),
  ca_certificates: z.array(z.string().min(1)).min(1),
  service_account_token: z.string().min(1).optional(),
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
