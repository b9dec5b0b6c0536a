import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../../src/file_system.ts";

/** What the platform knows about one agent (as returned by `agents()` and the admin API). */
export const AgentRecordSchema = z.object({
  agent_id: z.string(),
  hostname: z.string().nullable(),
  machine_id: z.string().nullable(),
  os: z.string().nullable(),
  /**
   * The last full `host` the agent sent (at enrollment or in a heartbeat): heartbeats carry it
   * only when it changed or was asked for, so summaries read it here, not from heartbeat bodies.
   */
  host: z.record(z.string(), z.unknown()).nullable().default(null),
  /** `host_digest` of the heartbeat that brought `host`, as given; null until one did. */
  host_digest: z.string().nullable().default(null),
  agent_version: z.string(),
  enrolled_at: z.string(),
  last_sequence: z.number().int(),
  last_heartbeat_at: z.string().nullable(),
  heartbeat_count: z.number().int(),
  revoked: z.boolean(),
  deleted: z.boolean(),
  /** Serial (hex) of the newest certificate issued to the agent. */
  certificate_serial: z.string(),
  /** Every serial issued to the agent, oldest first. */
  certificate_serials: z.array(z.string()),
  certificate_not_after: z.string(),
  /** SHA-256 of the current certificate's public key (renewal must bring a new key). */
  certificate_public_key_sha256: z.string(),
  renewal_count: z.number().int(),
});
/** What the platform knows about one agent. */
export type AgentRecord = z.infer<typeof AgentRecordSchema>;

/** One heartbeat as the platform received it. */
export const HeartbeatRecordSchema = z.object({
  agent_id: z.string(),
  sequence: z.number().int(),
  received_at: z.string(),
  body: z.unknown(),
  /** Whether the request carried an `Authorization` header at all. */
  had_authorization: z.boolean(),
  /** How the request was authenticated. */
  auth: z.enum(["bearer", "mtls"]),
  /** SHA-256 of the client certificate presented through the trusted proxy, if any. */
  client_cert_fingerprint: z.string().optional(),
  /** Size of the request body in bytes. */
  body_bytes: z.number().int(),
  /** The host's clock offset the heartbeat carried (contract v1.3 `clock_offset`), as given. */
  clock_offset: z.object({ seconds: z.number().int(), measured_at: z.string() }).optional(),
  /** The outage evidence the heartbeat carried (contract v1.3 `gap`), as given. */
  gap: z.object({
    since: z.string(),
    attempts: z.number().int(),
    last_error: z.object({
      kind: z.string(),
      status: z.number().int().nullable(),
      code: z.string().nullable(),
    }),
  }).optional(),
});
/** One heartbeat as the platform received it. */
export type HeartbeatRecord = z.infer<typeof HeartbeatRecordSchema>;

const EnrollmentTokenSchema = z.object({
  hash: z.string(),
  expires_at: z.string(),
  consumed_at: z.string().nullable(),
  agent_id: z.string().nullable(),
});
type EnrollmentToken = z.infer<typeof EnrollmentTokenSchema>;

const CredentialSchema = z.object({ hash: z.string(), agent_id: z.string() });

/** Layout of `state.json` under the data dir. */
const PersistedStateSchema = z.object({
  version: z.literal(1),
  admin_token: z.string().min(1),
  enrollment_tokens: z.array(EnrollmentTokenSchema),
  credentials: z.array(CredentialSchema),
  agents: z.array(AgentRecordSchema),
  heartbeats: z.array(HeartbeatRecordSchema),
});
type PersistedState = z.infer<typeof PersistedStateSchema>;

/** Heartbeats kept in `state.json` (all are kept in memory up to the history limit). */
const PERSISTED_HEARTBEATS = 1000;

/** SHA-256 (hex) of a secret: the store never keeps tokens in clear. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** A random opaque token with a readable prefix. */
export function newToken(prefix: string, bytes = 32): string {
  return `${prefix}${randomBytes(bytes).toString("base64url")}`;
}

/** Result of looking up an enrollment token. */
export type TokenCheck = "ok" | "unknown" | "expired" | "consumed";

/** In-memory platform state, optionally mirrored to `<dataDir>/state.json`. */
export class PlatformStore {
  readonly adminToken: string;
  readonly #tokens = new Map<string, EnrollmentToken>();
  readonly #credentials = new Map<string, string>();
  readonly #agents = new Map<string, AgentRecord>();
  #heartbeats: HeartbeatRecord[] = [];
  readonly #historyLimit: number;
  readonly #file: string | null;
  #dirty = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #writing: Promise<void> = Promise.resolve();

  private constructor(
    file: string | null,
    historyLimit: number,
    state: PersistedState | null,
  ) {
    this.#file = file;
    this.#historyLimit = historyLimit;
    this.adminToken = state?.admin_token ?? newToken("oc_adm_");
    for (const t of state?.enrollment_tokens ?? []) this.#tokens.set(t.hash, t);
    for (const c of state?.credentials ?? []) this.#credentials.set(c.hash, c.agent_id);
    for (const a of state?.agents ?? []) this.#agents.set(a.agent_id, a);
    this.#heartbeats = state?.heartbeats ?? [];
  }

  /** Opens the store: from `<dataDir>/state.json` when it exists, else empty. */
  static async open(dataDir: string | null, historyLimit: number): Promise<PlatformStore> {
    if (dataDir === null) return new PlatformStore(null, historyLimit, null);
    const file = join(dataDir, "state.json");
    let text: string | null = null;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    let state: PersistedState | null = null;
    if (text !== null) {
      const parsed = PersistedStateSchema.safeParse(JSON.parse(text));
      if (!parsed.success) {
        throw new Error(`Cannot load dev platform state: "${file}" is not a valid state file`);
      }
      state = parsed.data;
    }
    const store = new PlatformStore(file, historyLimit, state);
    if (state === null) await store.flush(true);
    return store;
  }

  /** Records a new enrollment token (hash only) valid until `expiresAt`. */
  addEnrollmentToken(token: string, expiresAt: Date): void {
    const hash = hashSecret(token);
    this.#tokens.set(hash, {
      hash,
      expires_at: expiresAt.toISOString(),
      consumed_at: null,
      agent_id: null,
    });
    this.#changed();
  }

  /** Whether an enrollment token can be used at `now`. */
  checkEnrollmentToken(token: string, now: Date): TokenCheck {
    const t = this.#tokens.get(hashSecret(token));
    if (!t) return "unknown";
    if (t.consumed_at !== null) return "consumed";
    if (Date.parse(t.expires_at) <= now.getTime()) return "expired";
    return "ok";
  }

  /** Marks an enrollment token used by `agentId`. */
  consumeEnrollmentToken(token: string, agentId: string, now: Date): void {
    const t = this.#tokens.get(hashSecret(token));
    if (!t) return;
    t.consumed_at = now.toISOString();
    t.agent_id = agentId;
    this.#changed();
  }

  /** Adds a newly enrolled agent with its bearer credential. */
  addAgent(record: AgentRecord, serviceAccountToken: string): void {
    this.#agents.set(record.agent_id, record);
    this.#credentials.set(hashSecret(serviceAccountToken), record.agent_id);
    this.#changed();
  }

  /** Binds an additional (rotated) bearer credential to an agent, dropping its older ones. */
  replaceCredential(agentId: string, serviceAccountToken: string): void {
    for (const [hash, id] of this.#credentials) if (id === agentId) this.#credentials.delete(hash);
    this.#credentials.set(hashSecret(serviceAccountToken), agentId);
    this.#changed();
  }

  /** The agent a bearer token belongs to, or null. */
  agentForBearer(token: string): string | null {
    return this.#credentials.get(hashSecret(token)) ?? null;
  }

  /** The live record of an agent (mutate through {@linkcode update}). */
  agent(agentId: string): AgentRecord | undefined {
    return this.#agents.get(agentId);
  }

  /** Applies a change to an agent record and schedules persistence. */
  update(agentId: string, change: (record: AgentRecord) => void): void {
    const record = this.#agents.get(agentId);
    if (!record) throw new Error(`Unknown agent "${agentId}"`);
    change(record);
    this.#changed();
  }

  /** Copies of all agent records. */
  agents(): AgentRecord[] {
    return [...this.#agents.values()].map((a) => structuredClone(a));
  }

  /** Records a heartbeat, dropping the oldest beyond the history limit. */
  addHeartbeat(record: HeartbeatRecord): void {
    this.#heartbeats.push(record);
    if (this.#heartbeats.length > this.#historyLimit) {
      this.#heartbeats.splice(0, this.#heartbeats.length - this.#historyLimit);
    }
    this.#changed();
  }

  /** Copies of the recorded heartbeats, optionally of one agent. */
  heartbeats(agentId?: string): HeartbeatRecord[] {
    return this.#heartbeats.filter((h) => agentId === undefined || h.agent_id === agentId)
      .map((h) => structuredClone(h));
  }

  #changed(): void {
    if (this.#file === null) return;
    this.#dirty = true;
    // Coalesce bursts of changes (heartbeats) into one write.
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      void this.flush();
    }, 50);
  }

  /** Writes `state.json` now if anything changed (atomically: temp file, then rename). */
  flush(force = false): Promise<void> {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const file = this.#file;
    if (file === null || (!this.#dirty && !force)) return this.#writing;
    this.#dirty = false;
    const state: PersistedState = {
      version: 1,
      admin_token: this.adminToken,
      enrollment_tokens: [...this.#tokens.values()],
      credentials: [...this.#credentials].map(([hash, agent_id]) => ({ hash, agent_id })),
      agents: [...this.#agents.values()],
      heartbeats: this.#heartbeats.slice(-PERSISTED_HEARTBEATS),
    };
    const text = JSON.stringify(state, null, 2);
    // The agent's atomic write: a fixed temp name written with truncation would follow a symlink.
    this.#writing = this.#writing.then(() => writeFileAtomic(file, text, 0o600));
    return this.#writing;
  }
}
