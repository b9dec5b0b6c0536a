/**
 * Enrollment: exchanges a one-time token for this host's identity. The key pair is made here and
 * never leaves the host; the answer is verified before anything is written, and an existing
 * identity is replaced (with `force`) only by one atomic rename.
 */
import type { CommandContext } from "../config/context.ts";
import { AlreadyEnrolledError, errorMessage, PlatformError, UsageError } from "../errors.ts";
import { denoFileSystem, type FileSystem, lstatOrNull } from "../file_system.ts";
import type { Logger } from "../log.ts";
import {
  type Identity,
  IdentityStore,
  type IdentityStoreOptions,
} from "../state/identity_store.ts";
import { emptyStatus, STATUS_FILE_NAME, StatusStore } from "../state/status_store.ts";
import { openIdentityForWriting } from "../state/writable_identity.ts";
import {
  type IdentityRequest,
  obtainIdentity,
  type ObtainIdentityDeps,
} from "./obtain_identity.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import { abortableSleep, TOKEN_SPENT_HINT } from "./enroll_request.ts";
import { deleteTokenFile, resolveToken } from "./enrollment_token.ts";
import { enrollmentTrust, type EnrollmentTrustDeps, readPinnedCas } from "./enrollment_trust.ts";

/** What `oneconnect-agent enroll` asks of {@linkcode enroll}. */
export interface EnrollOptions {
  /** `--token-file`; `-` reads standard input. */
  tokenFile?: string;
  force: boolean;
  /** `--timeout`: give up retrying after this many seconds. */
  timeoutSeconds: number;
  /** `--ca-pin` values (or `ONECONNECT_CA_PIN` split at commas), not yet validated. */
  caPins?: string[];
}

/** Seams of {@linkcode enroll}; every one defaults to the real thing. */
export interface EnrollDeps extends ObtainIdentityDeps, EnrollmentTrustDeps {
  fs: FileSystem;
  store: Pick<IdentityStoreOptions, "os" | "runCommand">;
  /** One request through the client the new identity will use (GET health); throws if it fails. */
  prove: (identity: Identity, ctx: CommandContext) => Promise<void>;
}

const defaultDeps: EnrollDeps = {
  createClient: async (options) => {
    const { PlatformClient } = await import("../platform/client.ts");
    return new PlatformClient(options);
  },
  collectHost: (logger) => new TelemetryCollector({ logger }).host(),
  hostname: () => {
    try {
      return Deno.hostname();
    } catch {
      return null;
    }
  },
  sleep: abortableSleep,
  random: Math.random,
  now: Date.now,
  fs: denoFileSystem,
  store: {},
  prove: async (identity, ctx) => {
    using client = clientForIdentity(identity, identityClientOptions(ctx));
    await client.health(ctx.shutdown);
  },
  pinnedCas: readPinnedCas,
};

/** Writes and removes a probe file: a read-only or full disk fails before the token is spent. */
async function assertStateDirWritable(fs: FileSystem, store: IdentityStore): Promise<void> {
  const probe = store.secretFilePath(".enroll-write-probe");
  try {
    await fs.writeFileAtomic(probe, " ".repeat(8192), 0o600);
  } catch (e) {
    throw new UsageError(
      `Cannot write to state directory ${JSON.stringify(store.stateDir)}: ${
        errorMessage(e)
      }; nothing was sent, the enrollment token is still unused`,
    );
  }
  await fs.remove(probe).catch(() => {});
}

/** Refuses to store an identity whose client cannot reach the platform (see EnrollDeps.prove). */
async function proveIdentity(
  ctx: CommandContext,
  deps: EnrollDeps,
  identity: Identity,
): Promise<void> {
  try {
    await deps.prove(identity, ctx);
  } catch (e) {
    if (!(e instanceof PlatformError)) throw e;
    throw new PlatformError(
      `Cannot enroll: the new identity was not stored because its client cannot reach the platform (GET api/v1/health: ${e.message}); ${TOKEN_SPENT_HINT}`,
      e,
      { cause: e },
    );
  }
}

/**
 * Checks the state directory is writable, obtains and proves the identity, then stores it; any
 * failure runs `cleanUp` first.
 */
async function storeNewIdentity(
  ctx: CommandContext,
  deps: EnrollDeps,
  { store, request, cleanUp }: {
    store: IdentityStore;
    request: IdentityRequest;
    cleanUp: () => Promise<void>;
  },
): Promise<{ identity: Identity; features: string[] }> {
  let obtained: { identity: Identity; features: string[] };
  try {
    await assertStateDirWritable(deps.fs, store);
    obtained = await obtainIdentity(ctx, deps, request);
    await proveIdentity(ctx, deps, obtained.identity);
  } catch (e) {
    await cleanUp();
    throw e;
  }
  try {
    await store.save(obtained.identity);
  } catch (e) {
    await cleanUp();
    if (!(e instanceof UsageError)) throw e;
    throw new UsageError(`${e.message}; the enrollment token is probably used up`, { cause: e });
  }
  return obtained;
}

/** The status file a new identity starts with; a failure only warns (the identity is stored). */
async function startStatus(
  fs: FileSystem,
  store: IdentityStore,
  logger: Logger,
  fresh: { replacing: boolean; agentId: string; features: string[] },
): Promise<void> {
  if (fresh.replacing) {
    // The old agent's heartbeat status (sequence, failures) says nothing about the new identity.
    const statusPath = store.secretFilePath(STATUS_FILE_NAME);
    await fs.remove(statusPath).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) {
        const error = errorMessage(e);
        logger.warn(`Could not remove the old identity's status ${JSON.stringify(statusPath)}`, {
          error,
        });
      }
    });
  }
  if (fresh.features.length > 0) {
    // So that the first heartbeat of the first run already uses what the platform supports.
    const status = new StatusStore(store.secretFilePath(STATUS_FILE_NAME), {
      ...emptyStatus(fresh.agentId),
      platform_features: fresh.features,
    }, { fs });
    await status.save().catch((e) => logger.warn(`Cannot write status file: ${errorMessage(e)}`));
  }
}

/** The outcome of {@linkcode enroll}. */
export interface Enrolled {
  identity: Identity;
  /** Whether an existing identity was replaced (`force`). */
  replaced: boolean;
  /** Whether this host was enrolled to this platform already (nothing was done). */
  already: boolean;
}

/**
 * `enroll` without `--force` on an enrolled host: success when it is enrolled to this platform
 * already, refused (exit 6) when to another one.
 */
async function keepExisting(store: IdentityStore, baseUrl: URL, logger: Logger): Promise<Enrolled> {
  // Loading reports a corrupt or unsafe file as such; a sound one is "already enrolled".
  const existing = await store.load();
  // Repeatable (configuration management runs it on every pass): enrolled to this platform
  // already is success, with no token read or spent; another platform needs --force.
  if (existing.platform_url === baseUrl.href) {
    logger.info(`Already enrolled as ${JSON.stringify(existing.agent_id)}; nothing was sent`, {
      agent_id: existing.agent_id,
    });
    return { identity: existing, replaced: false, already: true };
  }
  throw new AlreadyEnrolledError(
    `Already enrolled as ${JSON.stringify(existing.agent_id)} in ${
      JSON.stringify(store.stateDir)
    } with another platform (${
      JSON.stringify(existing.platform_url)
    }); pass --force to enroll with ${JSON.stringify(baseUrl.href)} and replace it`,
  );
}

/**
 * Enrolls this host: checks the state directory, decides what to trust, reads the token, obtains
 * and proves the identity, then stores it (one atomic rename) and deletes a used token file.
 */
export async function enroll(
  ctx: CommandContext,
  options: EnrollOptions,
  overrides: Partial<EnrollDeps> = {},
): Promise<Enrolled> {
  const deps: EnrollDeps = { ...defaultDeps, ...overrides };
  const { logger, config } = ctx;
  const baseUrl = config.platformUrl;
  if (baseUrl === undefined) {
    throw new UsageError(
      "Cannot enroll: no platform URL; pass --url https://<platform> or set ONECONNECT_PLATFORM_URL",
    );
  }
  const store = new IdentityStore(config.stateDir, { fs: deps.fs, logger, ...deps.store });
  await store.auditPermissions();
  const replacing = await store.exists();
  if (replacing && !options.force) return await keepExisting(store, baseUrl, logger);

  const { trust, cas: bootstrapCa } = await enrollmentTrust(ctx, options.caPins, deps, baseUrl);
  const token = await resolveToken(ctx, options.tokenFile, store, deps.fs);
  const createdStateDir = (await lstatOrNull(deps.fs, config.stateDir)) === null;
  // Before the token is spent: a state directory we cannot write must fail now, not after.
  await store.ensureStateDir();
  // Before the token is spent: a running service (or renew) must not write the identity too.
  // Audited above, before the token was read; nothing to load: the identity is replaced.
  await using lock = await openIdentityForWriting(store, {
    command: "enroll",
    action: "Cannot enroll",
    logger,
    audit: false,
    load: "none",
  });
  // Nothing stored: leave no empty state directory behind either (the remove is non-recursive).
  const cleanUp = async () => {
    await lock.release();
    if (createdStateDir) await deps.fs.remove(config.stateDir).catch(() => {});
  };
  const { identity, features } = await storeNewIdentity(ctx, deps, {
    store,
    request: { baseUrl, token, bootstrapCa, trust, timeoutSeconds: options.timeoutSeconds },
    cleanUp,
  });
  await startStatus(deps.fs, store, logger, { replacing, agentId: identity.agent_id, features });
  if (token.file !== undefined) await deleteTokenFile(deps.fs, token.file, logger);

  logger.info(`Enrolled as ${JSON.stringify(identity.agent_id)}`, {
    agent_id: identity.agent_id,
    certificate_not_after: identity.certificate_not_after,
    replaced: replacing,
  });
  return { identity, replaced: replacing, already: false };
}
