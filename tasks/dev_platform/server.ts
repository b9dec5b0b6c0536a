import { timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { ContractValidator } from "./contract_validator.ts";
import { writeFileAtomic } from "../../src/file_system.ts";
import { denoOwnershipHost, requireSafeParents } from "../../src/state/ownership.ts";
import {
  agentIdsOf,
  createDevCa,
  CsrError,
  type DevCa,
  fingerprint,
  issueAgentCertificate,
  issuedBy,
  issueServerCertificate,
  loadDevCa,
  parseCsr,
  type ParsedCsr,
} from "./dev_ca.ts";
import {
  type Fault,
  faultAnswers,
  faultDelay,
  faultResponse,
  FaultSchema,
  FaultSet,
} from "./faults.ts";
import {
  type AgentRecord,
  hashSecret,
  type HeartbeatRecord,
  newToken,
  PlatformStore,
} from "./store.ts";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

export { createDevCa } from "./dev_ca.ts";
export type { Fault } from "./faults.ts";
export type { AgentRecord, HeartbeatRecord } from "./store.ts";

/** Options for {@linkcode startDevPlatform}. */
export interface DevPlatformOptions {
  /** Listen address; default "127.0.0.1". */
  hostname?: string;
  /** Listen port; default 0 (ephemeral). */
  port?: number;
  /** Plain HTTP instead of HTTPS; refused unless `hostname` is loopback. */
  insecureHttp?: boolean;
  /** Directory for ca.crt, ca.key and state.json; default a temp dir removed on close. */
  dataDir?: string;
  /** Agent certificate lifetime in seconds; default 30 days. */
  certTtlSeconds?: number;
  /** Platform clock skew in seconds: health `time`, `Date` header, certificate validity. */
  clockOffsetSeconds?: number;
  /** Interval returned at enrollment and as `next_heartbeat_seconds`; default 60. */
  heartbeatIntervalSeconds?: number;
  /** Heartbeat, renew and unenroll need a verified client certificate via the trusted proxy. */
  requireMtls?: boolean;
  /** `X-OneConnect-Proxy-Secret` value marking requests from the trusted nginx. */
  proxySecret?: string;
  /**
   * Contract version to behave as: "1.3" (default) advertises `features: ["host_digest", "gap", "clock_offset"]`,
   * accepts digest-only heartbeats and records `gap` and `clock_offset`; "1.0" sends no `features` and answers a heartbeat without
   * `host` 400 `invalid_request`, as a platform written against contract v1.0 does.
   */
  contractVersion?: ContractVersion;
  /**
   * Advertise `host_digest`, yet answer every heartbeat without `host` 400 `invalid_request` (a
   * platform whose delta is broken): for tests of the agent's fallback. Default false.
   */
  refuseDigestOnly?: boolean;
  /** Validate every request and response against contract/openapi.yaml; default true. */
  validateContract?: boolean;
  /** No request log on stderr. */
  quiet?: boolean;
  /** Serve with this certificate instead of one from the dev CA (e.g. a foreign server). */
  serverCertificate?: { certPem: string; keyPem: string };
  /**
   * Issue agent certificates from this CA (e.g. an intermediate made by openssl) instead of the
   * dev CA, which then only serves TLS. Answers carry `certificate` = leaf + `chainPems` and
   * `ca_certificates` = `rootPems`.
   */
  issuingCa?: IssuingCaOptions;
  /** Rotate the service account token on each renewal (sent back in the renewal answer). */
  rotateServiceAccountTokenOnRenew?: boolean;
  /** Heartbeats kept in memory (oldest dropped first); default 10000. */
  heartbeatHistoryLimit?: number;
  /** Largest request body accepted before answering 413; default 65536 bytes. */
  maxBodyBytes?: number;
  /** Wall clock seam (before `clockOffsetSeconds`); default `Date.now`. */
  now?: () => number;
  /** Randomness seam for fault probabilities; default `Math.random`. */
  random?: () => number;
}

/** An external CA the dev platform signs agent certificates with. */
export interface IssuingCaOptions {
  /** The issuing CA certificate (PEM). */
  certPem: string;
  /** Its PKCS#8 ECDSA P-256 private key (PEM). */
  keyPem: string;
  /** Sent after the leaf in `certificate`, in this order; default `[certPem]`. */
  chainPems?: string[];
  /** The answers' `ca_certificates`: the root(s) the chain ends at. */
  rootPems: string[];
  /** Send the leaf after the chain, as a broken platform would (tests of the agent's check). */
  leafLast?: boolean;
}
/** Contract versions the dev platform can behave as. */
export type ContractVersion = "1.0" | "1.3";
/** Contract versions accepted by `--contract`. */
export const CONTRACT_VERSIONS: readonly ContractVersion[] = ["1.0", "1.3"];

/** A running dev platform. */
export interface DevPlatform extends AsyncDisposable {
  /** Base URL, e.g. `https://127.0.0.1:40123/`. */
  readonly url: URL;
  /** Dev CA certificate PEM. */
  readonly caCertPem: string;
  /** Path of the dev CA certificate on disk (for `--ca-file`). */
  readonly caFile: string;
  /** The TLS server certificate PEM (for nginx to reuse). */
  readonly serverCertPem: string;
  /** The TLS server key PEM (for nginx to reuse). */
  readonly serverKeyPem: string;
  /** Bearer token of the admin API. */
  readonly adminToken: string;
  /** Mints a single-use enrollment token; default TTL one hour. */
  mintEnrollmentToken(opts?: { ttlSeconds?: number }): string;
  /** Every agent the platform knows, deleted ones included. */
  agents(): AgentRecord[];
  /** Recorded heartbeats, oldest first, optionally of one agent. */
  heartbeats(agentId?: string): HeartbeatRecord[];
  /** Revokes an agent's credential: later calls answer 401 `credential_revoked`. */
  revokeCredential(agentId: string): void;
  /** Deletes an agent: later calls answer 410 `agent_unknown`. */
  deleteAgent(agentId: string): void;
  /** Arms a fault. */
  injectFault(fault: Fault): void;
  /** Disarms every fault. */
  clearFaults(): void;
  /** Every request or response that failed contract validation, one line each. */
  readonly contractViolations: string[];
  /** Distinct client connections seen (by remote address and port). */
  readonly connectionsOpened: number;
  /** Requests handled. */
  readonly requestCount: number;
  /** Stops serving, persists state, removes the temp data dir. */
  close(): Promise<void>;
}

const DEFAULT_CERT_TTL = 30 * 86_400;
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "[::1]"]);

/** Whether `hostname` is a loopback name or address. */
export function isLoopback(hostname: string): boolean {
  return LOOPBACK.has(hostname) || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

interface Reply {
  status: number;
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

const PROBLEM_TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  500: "Internal Server Error",
};

function problem(
  status: number,
  code: string,
  detail: string,
  extra: Record<string, unknown> = {},
): Reply {
  return {
    status,
    contentType: "application/problem+json",
    body: {
      type: `https://oneconnect.dev/problems/${code}`,
      title: PROBLEM_TITLES[status] ?? "Error",
      status,
      detail,
      code,
      ...extra,
    },
  };
}

function ok(status: number, body?: unknown): Reply {
  return { status, body, contentType: "application/json" };
}

type ApiRouteName = "enroll" | "heartbeat" | "renew" | "unenroll" | "health";
interface ApiRoute {
  name: ApiRouteName;
  agentId?: string;
}

function classify(method: string, path: string): ApiRoute | "method" | null {
  if (path === "/api/v1/agents/enroll") return method === "POST" ? { name: "enroll" } : "method";
  if (path === "/api/v1/health") return method === "GET" ? { name: "health" } : "method";
  let m = /^\/api\/v1\/agents\/([^/]+)\/heartbeats$/.exec(path);
  if (m) return method === "POST" ? { name: "heartbeat", agentId: decode(m[1]) } : "method";
  m = /^\/api\/v1\/agents\/([^/]+)\/certificate$/.exec(path);
  if (m) return method === "POST" ? { name: "renew", agentId: decode(m[1]) } : "method";
  m = /^\/api\/v1\/agents\/([^/]+)$/.exec(path);
  if (m) return method === "DELETE" ? { name: "unenroll", agentId: decode(m[1]) } : "method";
  return null;
}

function decode(s: string | undefined): string {
  try {
    return decodeURIComponent(s ?? "");
  } catch {
    return s ?? "";
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(hashSecret(a));
  const y = new TextEncoder().encode(hashSecret(b));
  return timingSafeEqual(x, y);
}

/** Reads at most `limit` bytes of body; null when it is larger. */
async function readBody(req: Request, limit: number): Promise<string | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await req.body?.cancel();
    return null;
  }
  if (!req.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.length;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  return new TextDecoder().decode(all);
}

interface Principal {
  agentId: string;
  auth: "bearer" | "mtls";
  fingerprint?: string;
}

const RenewBody = z.object({ csr: z.string() });
const EnrollBody = z.object({
  enrollment_token: z.string(),
  csr: z.string(),
  agent_version: z.string(),
  host: z.looseObject({
    hostname: z.string().nullable().optional(),
    machine_id: z.string().nullable().optional(),
    os: z.string().nullable().optional(),
  }),
});
const HeartbeatBody = z.looseObject({
  agent_id: z.string(),
  sequence: z.number().int().min(1),
  sent_at: z.string(),
  agent_version: z.string(),
  host_digest: z.string(),
  clock_offset: z.object({ seconds: z.number().int(), measured_at: z.string() }).optional(),
  gap: z.object({
    since: z.string(),
    attempts: z.number().int().min(1),
    last_error: z.object({
      kind: z.string(),
      status: z.number().int().nullable(),
      code: z.string().nullable(),
    }),
  }).optional(),
  host: z.looseObject({
    hostname: z.string().nullable().optional(),
    machine_id: z.string().nullable().optional(),
    os: z.string().nullable().optional(),
  }).optional(),
});

const AdminTokenBody = z.object({ ttl_seconds: z.number().int().positive().optional() });

async function publicKeyHash(key: x509.PublicKey): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", key.rawData);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Loads the dev CA from `dataDir`, or creates and writes one on first start. */
async function openDevCa(dataDir: string): Promise<DevCa> {
  const caFile = join(dataDir, "ca.crt");
  const caKeyFile = join(dataDir, "ca.key");
  try {
    return await loadDevCa(await Deno.readTextFile(caFile), await Deno.readTextFile(caKeyFile));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const ca = await createDevCa();
  // Never through a name someone else planted: temp file created exclusively, then renamed.
  await writeFileAtomic(caKeyFile, ca.keyPem, 0o600);
  await writeFileAtomic(caFile, ca.certPem, 0o644);
  return ca;
}

/** Starts a dev platform implementing contract v1 (see {@linkcode DevPlatformOptions}). */
export async function startDevPlatform(opts: DevPlatformOptions = {}): Promise<DevPlatform> {
  const hostname = opts.hostname ?? "127.0.0.1";
  if (opts.insecureHttp && !isLoopback(hostname)) {
    throw new Error(`Cannot serve plain HTTP on "${hostname}": --insecure-http is loopback only`);
  }
  const requireMtls = opts.requireMtls ?? false;
  if (requireMtls && !opts.proxySecret) {
    throw new Error("Cannot require mTLS without a proxy secret: give --proxy-secret");
  }
  const certTtl = opts.certTtlSeconds ?? DEFAULT_CERT_TTL;
  const interval = opts.heartbeatIntervalSeconds ?? 60;
  // What a v1.3 platform advertises; a v1.0 one has no `features` member at all.
  const features = (opts.contractVersion ?? "1.3") === "1.0"
    ? {}
    : { features: ["host_digest", "gap", "clock_offset"] };
  const maxBody = opts.maxBodyBytes ?? 65_536;
  const quiet = opts.quiet ?? false;
  const offsetMs = (opts.clockOffsetSeconds ?? 0) * 1000;
  const wall = opts.now ?? Date.now;
  const now = () => new Date(wall() + offsetMs);

  const validate = opts.validateContract ?? true;
  const validator = await ContractValidator.load();
  const ownsDataDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? await Deno.makeTempDir({ prefix: "oneconnect-dev-platform-" });
  const caFile = join(dataDir, "ca.crt");
  let devCa: DevCa;
  /** The CA agent certificates are issued (and client certificates checked) with. */
  let ca: DevCa;
  let server: { certPem: string; keyPem: string };
  let store: PlatformStore;
  try {
    // Often run as root (CI): a data directory another user can write is refused, as for the
    // agent's state (docs/security.md, write paths).
    if (!ownsDataDir) {
      await requireSafeParents(join(dataDir, "state.json"), denoOwnershipHost, "data directory");
    }
    await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    devCa = await openDevCa(dataDir);
    // The TLS certificates follow the real clock: a skewed platform clock must not break TLS.
    server = opts.serverCertificate ?? await issueServerCertificate(devCa);
    ca = opts.issuingCa ? await loadDevCa(opts.issuingCa.certPem, opts.issuingCa.keyPem) : devCa;
    store = await PlatformStore.open(
      ownsDataDir ? null : dataDir,
      opts.heartbeatHistoryLimit ?? 10_000,
    );
  } catch (e) {
    if (ownsDataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw e;
  }
  const faults = new FaultSet(opts.random);
  const violations: string[] = [];
  const connections = new Set<string>();
  const closing = new AbortController();
  let requests = 0;

  const log = (line: string) => {
    if (!quiet) console.error(`dev-platform: ${line}`);
  };

  /** `certificate` and `ca_certificates` of an enrollment or renewal answer. */
  function issuedAnswer(cert: x509.X509Certificate) {
    const leaf = cert.toString("pem");
    const issuing = opts.issuingCa;
    if (!issuing) return { certificate: leaf, ca_certificates: [ca.certPem] };
    const chain = (issuing.chainPems ?? [issuing.certPem]).map((pem) => pem.trim());
    const blocks = issuing.leafLast ? [...chain, leaf] : [leaf, ...chain];
    return { certificate: `${blocks.join("\n")}\n`, ca_certificates: issuing.rootPems };
  }

  async function authenticate(req: Request): Promise<Principal | Reply> {
    const secret = req.headers.get("x-oneconnect-proxy-secret");
    const proxied = opts.proxySecret !== undefined && secret !== null &&
      safeEqual(secret, opts.proxySecret);
    const escaped = req.headers.get("x-client-cert");
    if (proxied && req.headers.get("x-client-verify") === "SUCCESS" && escaped) {
      let cert: x509.X509Certificate;
      try {
        cert = new x509.X509Certificate(decodeURIComponent(escaped));
      } catch {
        return problem(401, "client_certificate_invalid", "client certificate does not parse");
      }
      if (!(await issuedBy(cert, ca, now()))) {
        return problem(
          401,
          "client_certificate_invalid",
          "client certificate not issued by this platform or expired",
        );
      }
      const ids = agentIdsOf(cert);
      const agentId = ids[0];
      if (ids.length !== 1 || agentId === undefined) {
        return problem(401, "client_certificate_invalid", "client certificate names no agent");
      }
      const agent = store.agent(agentId);
      if (!agent || !agent.certificate_serials.includes(cert.serialNumber)) {
        return problem(
          401,
          "credential_invalid",
          "client certificate is not known to the platform",
        );
      }
      return { agentId, auth: "mtls", fingerprint: await fingerprint(cert) };
    }
    if (requireMtls) {
      return problem(
        401,
        "client_certificate_required",
        "this platform requires a client certificate",
      );
    }
    const authorization = req.headers.get("authorization");
    const m = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization) : null;
    if (!m || !m[1]) return problem(401, "credential_invalid", "missing bearer token");
    const agentId = store.agentForBearer(m[1]);
    if (agentId === null) return problem(401, "credential_invalid", "unknown bearer token");
    return { agentId, auth: "bearer" };
  }

  /** Authenticates and checks the agent may act on `pathAgentId`. */
  /** Authenticates the agent of the path; a refused request's body is drained, never read. */
  async function authorize(req: Request, pathAgentId: string): Promise<
    { principal: Principal; agent: AgentRecord } | Reply
  > {
    const auth = await authorizeAgent(req, pathAgentId);
    if ("status" in auth) await req.body?.cancel();
    return auth;
  }

  async function authorizeAgent(req: Request, pathAgentId: string): Promise<
    { principal: Principal; agent: AgentRecord } | Reply
  > {
    const principal = await authenticate(req);
    if ("status" in principal) return principal;
    if (principal.agentId !== pathAgentId) {
      return problem(403, "agent_mismatch", "the credential belongs to another agent");
    }
    const agent = store.agent(pathAgentId);
    if (!agent) return problem(404, "agent_unknown", `agent "${pathAgentId}" is unknown`);
    if (agent.deleted) return problem(410, "agent_unknown", `agent "${pathAgentId}" was deleted`);
    if (agent.revoked) {
      return problem(
        401,
        "credential_revoked",
        `the credential of agent "${pathAgentId}" was revoked`,
      );
    }
    return { principal, agent };
  }

  function parseJson(text: string): { value: unknown } | Reply {
    try {
      return { value: JSON.parse(text) };
    } catch {
      return problem(400, "invalid_request", "body is not JSON");
    }
  }

  /** Schema check of the request body against the contract; violations are recorded. */
  function checkRequest(method: string, path: string, body: unknown): Reply | null {
    const errors = validator.validateRequest(method, path, body);
    if (errors.length === 0) return null;
    if (validate) violations.push(`request ${method} ${path}: ${errors.join("; ")}`);
    return problem(400, "invalid_request", errors.slice(0, 3).join("; "));
  }

  async function csrOf(pem: string): Promise<ParsedCsr | Reply> {
    try {
      return await parseCsr(pem);
    } catch (e) {
      if (e instanceof CsrError) return problem(400, "invalid_csr", e.message);
      throw e;
    }
  }

  /**
   * Reads a request body as JSON, checks it against the contract (when validating) and `schema`;
   * answers 413 or 400 otherwise. Shared by every route that takes a body.
   */
  async function readRequest<T>(
    req: Request,
    method: string,
    path: string,
    schema: z.ZodType<T>,
    name: string,
  ): Promise<{ value: T; raw: unknown; text: string } | Reply> {
    const text = await readBody(req, maxBody);
    if (text === null) return problem(413, "payload_too_large", `body exceeds ${maxBody} bytes`);
    const json = parseJson(text);
    if ("status" in json) return json;
    const bad = checkRequest(method, path, json.value);
    if (bad) return bad;
    const parsed = schema.safeParse(json.value);
    if (!parsed.success) return problem(400, "invalid_request", `body does not match ${name}`);
    return { value: parsed.data, raw: json.value, text };
  }

  async function enroll(req: Request, method: string, path: string): Promise<Reply> {
    const request = await readRequest(req, method, path, EnrollBody, "EnrollRequest");
    if ("status" in request) return request;
    const body = request.value;
    const tokenProblem = (): Reply | null => {
      switch (store.checkEnrollmentToken(body.enrollment_token, now())) {
        case "unknown":
          return problem(401, "enrollment_token_invalid", "enrollment token is unknown");
        case "expired":
          return problem(401, "enrollment_token_invalid", "enrollment token has expired");
        case "consumed":
          return problem(409, "enrollment_token_consumed", "enrollment token was already used");
        case "ok":
          return null;
      }
    };
    const early = tokenProblem();
    if (early) return early;
    const csr = await csrOf(body.csr);
    if ("status" in csr) return csr;
    const keyHash = await publicKeyHash(csr.csr.publicKey);
    const agentId = crypto.randomUUID();
    const issuedAt = now();
    const cert = await issueAgentCertificate(ca, {
      agentId,
      csr,
      notBefore: new Date(issuedAt.getTime() - 60_000),
      notAfter: new Date(issuedAt.getTime() + certTtl * 1000),
    });
    // Re-check after the awaits: two concurrent requests must not both spend one token.
    const late = tokenProblem();
    if (late) return late;
    const serviceAccountToken = newToken("oc_sat_");
    store.consumeEnrollmentToken(body.enrollment_token, agentId, issuedAt);
    store.addAgent({
      agent_id: agentId,
      hostname: body.host.hostname ?? null,
      machine_id: body.host.machine_id ?? null,
      os: body.host.os ?? null,
      host: body.host,
      host_digest: null,
      agent_version: body.agent_version,
      enrolled_at: issuedAt.toISOString(),
      last_sequence: 0,
      last_heartbeat_at: null,
      heartbeat_count: 0,
      revoked: false,
      deleted: false,
      certificate_serial: cert.serialNumber,
      certificate_serials: [cert.serialNumber],
      certificate_not_after: cert.notAfter.toISOString(),
      certificate_public_key_sha256: keyHash,
      renewal_count: 0,
    }, serviceAccountToken);
    log(`enrolled agent ${agentId} (${body.host.hostname ?? "no hostname"})`);
    return ok(201, {
      agent_id: agentId,
      ...issuedAnswer(cert),
      service_account_token: serviceAccountToken,
      heartbeat_interval_seconds: interval,
      ...features,
    });
  }

  async function heartbeat(
    req: Request,
    method: string,
    path: string,
    pathAgentId: string,
  ): Promise<Reply> {
    const auth = await authorize(req, pathAgentId);
    if ("status" in auth) return auth;
    const request = await readRequest(req, method, path, HeartbeatBody, "HeartbeatRequest");
    if ("status" in request) return request;
    const body = request.value;
    const hostMissing = typeof body.host !== "object" || body.host === null;
    if (hostMissing && (!("features" in features) || opts.refuseDigestOnly)) {
      // Contract v1.0 requires `host` on every heartbeat (and so does a broken v1.3 platform).
      return problem(400, "invalid_request", "host is not an object");
    }
    if (body.clock_offset !== undefined && !("features" in features) && validate) {
      violations.push(
        `request ${method} ${path}: clock_offset sent to a platform that did not advertise it`,
      );
    }
    const gap = body.gap;
    if (gap !== undefined) {
      if (!("features" in features) && validate) {
        // A v1.0 platform ignores it, but the agent broke the rule: only after `features`.
        violations.push(
          `request ${method} ${path}: gap sent to a platform that did not advertise it`,
        );
      }
      if (!(Date.parse(gap.since) <= Date.parse(body.sent_at))) {
        return problem(400, "invalid_request", "gap.since is not before sent_at");
      }
    }
    if (body.agent_id !== pathAgentId) {
      return problem(400, "invalid_request", "agent_id in the body differs from the path");
    }
    if (body.sequence <= auth.agent.last_sequence) {
      return problem(
        409,
        "sequence_conflict",
        `sequence ${body.sequence} is not greater than ${auth.agent.last_sequence}`,
        { last_sequence: auth.agent.last_sequence },
      );
    }
    const receivedAt = now().toISOString();
    const host = body.host;
    // Inventory delta: a beat without `host` names the host it means by digest; one the platform
    // does not hold (state lost, restored from a backup) is asked for on the next beat.
    const hostRequired = host === undefined && body.host_digest !== auth.agent.host_digest;
    store.update(pathAgentId, (a) => {
      a.last_sequence = body.sequence;
      a.last_heartbeat_at = receivedAt;
      a.heartbeat_count += 1;
      a.agent_version = body.agent_version;
      if (host !== undefined) {
        // Stored as given: digests are the agent's word, never recomputed or canonicalised here.
        a.host = host;
        a.host_digest = body.host_digest;
        a.hostname = host.hostname ?? a.hostname;
        a.machine_id = host.machine_id ?? a.machine_id;
        a.os = host.os ?? a.os;
      }
    });
    const record: HeartbeatRecord = {
      agent_id: pathAgentId,
      sequence: body.sequence,
      received_at: receivedAt,
      body: request.raw,
      had_authorization: req.headers.has("authorization"),
      auth: auth.principal.auth,
      body_bytes: new TextEncoder().encode(request.text).length,
    };
    if (auth.principal.fingerprint) record.client_cert_fingerprint = auth.principal.fingerprint;
    if (body.clock_offset !== undefined) record.clock_offset = body.clock_offset;
    if (gap !== undefined) {
      record.gap = gap;
      log(
        `agent ${pathAgentId} reports a gap since ${gap.since}: ${gap.attempts} failed attempts, last ${gap.last_error.kind}${
          gap.last_error.status === null ? "" : ` ${gap.last_error.status}`
        }${gap.last_error.code === null ? "" : ` ${gap.last_error.code}`}`,
      );
    }
    store.addHeartbeat(record);
    if (hostRequired) {
      log(
        `agent ${pathAgentId} sent host_digest ${body.host_digest.slice(0, 12)}…, asking for host`,
      );
      return ok(200, { next_heartbeat_seconds: interval, host_required: true, ...features });
    }
    return ok(200, { next_heartbeat_seconds: interval, ...features });
  }

  async function renew(
    req: Request,
    method: string,
    path: string,
    pathAgentId: string,
  ): Promise<Reply> {
    const auth = await authorize(req, pathAgentId);
    if ("status" in auth) return auth;
    const request = await readRequest(req, method, path, RenewBody, "RenewRequest");
    if ("status" in request) return request;
    const csr = await csrOf(request.value.csr);
    if ("status" in csr) return csr;
    const keyHash = await publicKeyHash(csr.csr.publicKey);
    if (auth.agent.certificate_public_key_sha256 === keyHash) {
      return problem(400, "invalid_csr", "renewal needs a CSR for a new key pair");
    }
    const issuedAt = now();
    const cert = await issueAgentCertificate(ca, {
      agentId: pathAgentId,
      csr,
      notBefore: new Date(issuedAt.getTime() - 60_000),
      notAfter: new Date(issuedAt.getTime() + certTtl * 1000),
    });
    store.update(pathAgentId, (a) => {
      a.certificate_serial = cert.serialNumber;
      a.certificate_serials.push(cert.serialNumber);
      a.certificate_not_after = cert.notAfter.toISOString();
      a.certificate_public_key_sha256 = keyHash;
      a.renewal_count += 1;
    });
    const answer: Record<string, unknown> = issuedAnswer(cert);
    if (opts.rotateServiceAccountTokenOnRenew) {
      const token = newToken("oc_sat_");
      store.replaceCredential(pathAgentId, token);
      answer.service_account_token = token;
    }
    log(`renewed certificate of agent ${pathAgentId}`);
    return ok(200, answer);
  }

  async function unenroll(req: Request, pathAgentId: string): Promise<Reply> {
    const auth = await authorize(req, pathAgentId);
    await req.body?.cancel();
    if ("status" in auth) return auth;
    store.update(pathAgentId, (a) => {
      a.deleted = true;
    });
    log(`agent ${pathAgentId} unenrolled itself`);
    return { status: 204 };
  }

  function mustAgent(agentId: string): void {
    if (!store.agent(agentId)) throw new Error(`Unknown agent "${agentId}"`);
  }

  function mint(ttlSeconds = 3600): { token: string; expiresAt: Date } {
    const token = newToken("oc_enr_", 24);
    const expiresAt = new Date(now().getTime() + ttlSeconds * 1000);
    store.addEnrollmentToken(token, expiresAt);
    return { token, expiresAt };
  }

  async function admin(req: Request, method: string, path: string): Promise<Reply> {
    const authorization = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!m || !m[1] || !safeEqual(m[1], store.adminToken)) {
      await req.body?.cancel();
      return problem(401, "admin_token_invalid", "missing or wrong admin token");
    }
    const text = await readBody(req, maxBody);
    if (text === null) return problem(413, "payload_too_large", `body exceeds ${maxBody} bytes`);
    const jsonBody = (): { value: unknown } | Reply =>
      text === "" ? { value: {} } : parseJson(text);
    if (path === "/admin/v1/enrollment-tokens" && method === "POST") {
      const json = jsonBody();
      if ("status" in json) return json;
      const parsed = AdminTokenBody.safeParse(json.value);
      if (!parsed.success) {
        return problem(400, "invalid_request", "ttl_seconds must be a positive integer");
      }
      const { token, expiresAt } = mint(parsed.data.ttl_seconds);
      return ok(201, { enrollment_token: token, expires_at: expiresAt.toISOString() });
    }
    if (path === "/admin/v1/agents" && method === "GET") return ok(200, { agents: store.agents() });
    if (path === "/admin/v1/faults") {
      if (method === "DELETE") {
        faults.clear();
        return { status: 204 };
      }
      if (method === "POST") {
        const json = jsonBody();
        if ("status" in json) return json;
        const parsed = FaultSchema.safeParse(json.value);
        if (!parsed.success) return problem(400, "invalid_request", "body is not a valid fault");
        faults.add(parsed.data);
        return ok(201, { armed: faults.size });
      }
    }
    const am = /^\/admin\/v1\/agents\/([^/]+)(\/revoke|\/heartbeats)?$/.exec(path);
    if (am) {
      const agentId = decode(am[1]);
      if (!store.agent(agentId)) {
        return problem(404, "agent_unknown", `agent "${agentId}" is unknown`);
      }
      if (am[2] === "/revoke" && method === "POST") {
        platform.revokeCredential(agentId);
        return { status: 204 };
      }
      if (am[2] === "/heartbeats" && method === "GET") {
        return ok(200, { heartbeats: store.heartbeats(agentId) });
      }
      if (am[2] === undefined && method === "DELETE") {
        platform.deleteAgent(agentId);
        return { status: 204 };
      }
      if (am[2] === undefined && method === "GET") {
        return ok(200, store.agents().find((a) => a.agent_id === agentId));
      }
    }
    return problem(404, "not_found", `no admin route ${method} ${path}`);
  }

  async function api(req: Request, route: ApiRoute, method: string, path: string): Promise<Reply> {
    switch (route.name) {
      case "enroll":
        return await enroll(req, method, path);
      case "heartbeat":
        return await heartbeat(req, method, path, route.agentId ?? "");
      case "renew":
        return await renew(req, method, path, route.agentId ?? "");
      case "unenroll":
        return await unenroll(req, route.agentId ?? "");
      case "health":
        await req.body?.cancel();
        return ok(200, { status: "ok", time: now().toISOString() });
    }
  }

  function render(reply: Reply): { response: Response; text: string } {
    const headers = new Headers(reply.headers);
    headers.set("date", now().toUTCString());
    const text = reply.body === undefined ? "" : JSON.stringify(reply.body);
    if (reply.body !== undefined) {
      headers.set("content-type", reply.contentType ?? "application/json");
    }
    return {
      response: new Response(reply.body === undefined ? null : text, {
        status: reply.status,
        headers,
      }),
      text,
    };
  }

  async function handle(
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Promise<Response> {
    requests += 1;
    connections.add(`${info.remoteAddr.hostname}:${info.remoteAddr.port}`);
    const started = performance.now();
    const url = new URL(req.url);
    const method = req.method;
    const path = url.pathname;
    let response: Response;
    if (path.startsWith("/admin/")) {
      response = render(await admin(req, method, path)).response;
    } else {
      const route = classify(method, path);
      if (route === null || route === "method") {
        await req.body?.cancel();
        if (validate) {
          violations.push(`request ${method} ${path}: not an operation of the contract`);
        }
        response = render(
          route === null
            ? problem(404, "not_found", `no route ${method} ${path}`)
            : problem(405, "method_not_allowed", `${method} is not allowed on ${path}`),
        ).response;
      } else {
        const fault = faults.take(route.name);
        if (fault?.delayMs) await faultDelay(fault.delayMs, closing.signal);
        if (fault && faultAnswers(fault)) {
          await req.body?.cancel();
          response = faultResponse(fault, closing.signal);
        } else {
          const reply = await api(req, route, method, path);
          const rendered = render(reply);
          if (validate) {
            const errors = validator.validateResponse(
              method,
              path,
              reply.status,
              rendered.response.headers,
              rendered.text,
            );
            if (errors.length > 0) {
              violations.push(`response ${method} ${path} ${reply.status}: ${errors.join("; ")}`);
            }
          }
          response = rendered.response;
        }
      }
    }
    log(`${method} ${path} ${response.status} ${(performance.now() - started).toFixed(1)}ms`);
    return response;
  }

  const tls = opts.insecureHttp ? {} : { cert: server.certPem, key: server.keyPem };
  let httpServer: Deno.HttpServer<Deno.NetAddr>;
  try {
    httpServer = Deno.serve({
      hostname,
      port: opts.port ?? 0,
      ...tls,
      onListen: () => {},
      onError: (error) => {
        const message = error instanceof Error ? error.message : String(error);
        // A client that went away mid-body (killed agent, reset fault) is not a platform bug.
        const clientGone = /request body|connection (closed|reset)|resource unavailable/i.test(
          message,
        );
        if (!opts.quiet || !clientGone) console.error(`dev-platform: internal error: ${message}`);
        return render(problem(500, "internal_error", "the dev platform failed")).response;
      },
      handler: handle,
    });
  } catch (e) {
    // A taken port must not leak the temp data dir.
    await store.flush();
    if (ownsDataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw e;
  }
  const addr = httpServer.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = new URL(`${opts.insecureHttp ? "http" : "https"}://${host}:${addr.port}/`);
  let closed = false;

  const platform: DevPlatform = {
    url,
    caCertPem: devCa.certPem,
    caFile,
    serverCertPem: server.certPem,
    serverKeyPem: server.keyPem,
    adminToken: store.adminToken,
    mintEnrollmentToken: (o) => mint(o?.ttlSeconds).token,
    agents: () => store.agents(),
    heartbeats: (agentId) => store.heartbeats(agentId),
    revokeCredential(agentId) {
      mustAgent(agentId);
      store.update(agentId, (a) => {
        a.revoked = true;
      });
    },
    deleteAgent(agentId) {
      mustAgent(agentId);
      store.update(agentId, (a) => {
        a.deleted = true;
      });
    },
    injectFault: (fault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    get contractViolations() {
      return violations;
    },
    get connectionsOpened() {
      return connections.size;
    },
    get requestCount() {
      return requests;
    },
    async close() {
      if (closed) return;
      closed = true;
      closing.abort();
      await httpServer.shutdown();
      await store.flush();
      if (ownsDataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
    [Symbol.asyncDispose]() {
      return platform.close();
    },
  };
  return platform;
}
