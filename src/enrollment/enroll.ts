import { ClockOffset } from "../platform/clock_offset.ts";
import { failureDelay } from "../platform/backoff.ts";
import {
  CertificateCheckError,
  createCsr,
  exportPrivateKeyPem,
  generateAgentKeyPair,
  parseCertificate,
  splitPemBundle,
  type VerifiedCertificate,
  verifyIssuedCertificate,
} from "../trust/certificates.ts";
import type { CommandContext } from "../context.ts";
import {
  ENROLLMENT_REJECTION_STATUSES,
  type EnrollRequest,
  type EnrollResponse,
  EnrollResponseSchema,
  isEnrollmentRejection,
  notRejectedNote,
} from "../platform/contract.ts";
import {
  AlreadyEnrolledError,
  CredentialRejectedError,
  errorMessage,
  PlatformError,
  UsageError,
} from "../errors.ts";
import { denoFileSystem, type FileSystem } from "../file_system.ts";
import {
  ENROLLMENT_TOKEN_FILE_NAME,
  type Identity,
  IdentityStore,
  type IdentityStoreOptions,
} from "../state/identity_store.ts";
import { type Logger, registerSecret } from "../log.ts";
import { emptyStatus, STATUS_FILE_NAME, StatusStore } from "../state/status_store.ts";
import { acquireStateLock } from "../state/state_lock.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import { TelemetryCollector } from "../telemetry/collector.ts";
import type { Host } from "../platform/telemetry_wire.ts";
import { describeTrust, rootStoreOf, type Trust } from "../trust/trust_source.ts";
import type { RootStore } from "../trust/trust_store.ts";
import { VERSION } from "../version.ts";

/** Flags of `oneconnect-agent enroll`. */
export interface EnrollOptions {
  /** `--token-file`; `-` reads standard input. */
  tokenFile?: string;
  force: boolean;
  check: boolean;
  /** `--timeout`: give up retrying after this many seconds. */
  timeoutSeconds: number;
  /** `--ca-pin` values (or `ONECONNECT_CA_PIN` split at commas), not yet validated. */
  caPins?: string[];
}

/** The one platform call enrollment makes (the PlatformClient, or a fake in unit tests). */
export interface EnrollClient {
  enroll(body: EnrollRequest, signal?: AbortSignal): Promise<EnrollResponse>;
  close(): void;
}

/** How the enrollment client is built: bootstrap trust only, no credential. */
export interface EnrollClientOptions {
  baseUrl: URL;
  /** The `--ca-file` bundle or the CAs matching `--ca-pin`; undefined = the root store alone. */
  caCertificates?: string[];
  /** Deno root store trusted besides `caCertificates`. */
  rootStore?: RootStore;
  proxyUrl?: URL;
  proxyPac?: string;
  /** Measures the platform's clock from its answers (for the hint of a validity error). */
  clock?: ClockOffset;
  env: (name: string) => string | undefined;
  timeoutMs: number;
  logger: Logger;
}

/** Seams of {@linkcode enrollCommand}; every one defaults to the real thing. */
export interface EnrollDeps {
  createClient: (options: EnrollClientOptions) => Promise<EnrollClient>;
  collectHost: (logger: Logger) => Promise<Host>;
  hostname: () => string | null;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  random: () => number;
  /** Wall clock, ms: the retry deadline and the certificate validity check. */
  now: () => number;
  fs: FileSystem;
  store: Pick<IdentityStoreOptions, "os" | "runCommand">;
  /** One request through the client the new identity will use (GET health); throws if it fails. */
  prove: (identity: Identity, ctx: CommandContext) => Promise<void>;
  /** The CA certificates matching `pins` among those the platform presents (see ca_pin.ts). */
  pinnedCas: (baseUrl: URL, pins: string[], timeoutMs: number) => Promise<string[]>;
}

/** Longest token file or stdin accepted; a token is short, anything bigger is a mistake. */
export const MAX_TOKEN_BYTES = 64 * 1024;

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
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
  pinnedCas: async (baseUrl, pins, timeoutMs) => {
    const { matchPinnedCas, readPresentedChain } = await import("../trust/ca_pin.ts");
    const host = baseUrl.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = Number(baseUrl.port || 443);
    const chain = await readPresentedChain(host, port, timeoutMs);
    const matched = await matchPinnedCas(chain, pins, `${baseUrl.hostname}:${port}`);
    return matched.map((c) => c.pem);
  },
};

/** Where the enrollment token came from, for messages and for deleting the file afterwards. */
interface TokenSource {
  token: string;
  /** How to name the source in messages. */
  label: string;
  /** The file to delete after a successful enrollment, if any. */
  file?: string;
}

async function readStdin(stream: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > MAX_TOKEN_BYTES) {
      throw new UsageError(
        `Enrollment token from standard input is larger than ${MAX_TOKEN_BYTES} bytes`,
      );
    }
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

async function readTokenFile(fs: FileSystem, path: string, label: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await fs.lstat(path);
  } catch (e) {
    throw new UsageError(`Cannot read enrollment token ${label}: ${errorMessage(e)}`);
  }
  if (info.isSymlink) {
    throw new UsageError(
      `Refusing to read enrollment token ${label}: it is a symbolic link; pass the real file`,
    );
  }
  if (!info.isFile) {
    throw new UsageError(`Refusing to read enrollment token ${label}: it is not a regular file`);
  }
  if (info.size > MAX_TOKEN_BYTES) {
    throw new UsageError(
      `Enrollment token ${label} is larger than ${MAX_TOKEN_BYTES} bytes: not a token file`,
    );
  }
  try {
    return await fs.readTextFile(path);
  } catch (e) {
    throw new UsageError(`Cannot read enrollment token ${label}: ${errorMessage(e)}`);
  }
}

async function fileExists(fs: FileSystem, path: string): Promise<boolean> {
  try {
    await fs.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new UsageError(`Cannot inspect ${JSON.stringify(path)}: ${errorMessage(e)}`);
  }
}

/**
 * Finds the enrollment token, first found wins: `--token-file` (`-` = stdin), the environment,
 * `<state-dir>/enrollment.token`. There is deliberately no flag taking the token itself (argv is
 * visible to every user).
 */
async function resolveToken(
  ctx: CommandContext,
  options: EnrollOptions,
  store: IdentityStore,
  fs: FileSystem,
): Promise<TokenSource> {
  let source: TokenSource | undefined;
  if (options.tokenFile === "-") {
    source = { token: await readStdin(ctx.stdin()), label: "from standard input" };
  } else if (options.tokenFile !== undefined) {
    const label = `file ${JSON.stringify(options.tokenFile)} (--token-file)`;
    source = {
      token: await readTokenFile(fs, options.tokenFile, label),
      label,
      file: options.tokenFile,
    };
  } else {
    const env = ctx.env("ONECONNECT_ENROLLMENT_TOKEN");
    if (env !== undefined) {
      source = { token: env, label: "from ONECONNECT_ENROLLMENT_TOKEN" };
    } else {
      const path = store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME);
      if (await fileExists(fs, path)) {
        const label = `file ${JSON.stringify(path)}`;
        source = { token: await readTokenFile(fs, path, label), label, file: path };
      }
    }
  }
  if (source === undefined) {
    throw new UsageError(
      `No enrollment token found; pass --token-file <path> (- for stdin), set ONECONNECT_ENROLLMENT_TOKEN, or put it in ${
        JSON.stringify(store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME))
      }`,
    );
  }
  registerSecret(source.token);
  source.token = source.token.trim();
  if (source.token === "") throw new UsageError(`Enrollment token ${source.label} is empty`);
  return source;
}

/** Reads a `--ca-file` bundle: at least one certificate, each one parsable (else UsageError). */
export async function readBootstrapCa(fs: FileSystem, path: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readTextFile(path);
  } catch (e) {
    throw new UsageError(`Cannot read CA file ${JSON.stringify(path)}: ${errorMessage(e)}`);
  }
  const pems = splitPemBundle(text);
  if (pems.length === 0) {
    throw new UsageError(
      `Invalid CA file ${JSON.stringify(path)}: no PEM certificate (-----BEGIN CERTIFICATE-----)`,
    );
  }
  for (const [i, pem] of pems.entries()) {
    const parsed = parseCertificate(pem);
    if (typeof parsed === "string") {
      throw new UsageError(
        `Invalid CA file ${JSON.stringify(path)}: certificate #${i + 1} is ${parsed}`,
      );
    }
  }
  return pems;
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

const TOKEN_SPENT_HINT =
  "nothing was stored; the enrollment token is probably used up, so ask for a new one";

function rejectedAnswer(why: string, hint = ""): PlatformError {
  return new PlatformError(
    `Cannot enroll: refusing the platform's answer: ${why}; ${TOKEN_SPENT_HINT}${hint}`,
    { kind: "invalid_response" },
  );
}

/** Sends the enrollment request, retrying network errors, 429 and 5xx within the deadline. */
async function requestWithRetries(
  ctx: CommandContext,
  client: EnrollClient,
  body: EnrollRequest,
  timeoutSeconds: number,
  deps: EnrollDeps,
): Promise<EnrollResponse> {
  const deadline = deps.now() + timeoutSeconds * 1000;
  for (let attempt = 1;; attempt++) {
    const budget = new AbortController();
    const timer = setTimeout(
      () => budget.abort(new Error("enrollment timeout reached")),
      Math.max(0, deadline - deps.now()),
    );
    // A listener removed in `finally`, not AbortSignal.any over the process-long shutdown signal
    // (Deno #24842), as in the platform client.
    const request = new AbortController();
    const abortRequest = () => request.abort();
    ctx.shutdown.addEventListener("abort", abortRequest, { once: true });
    budget.signal.addEventListener("abort", abortRequest, { once: true });
    if (ctx.shutdown.aborted) request.abort();
    let error: unknown;
    try {
      return await client.enroll(body, request.signal);
    } catch (e) {
      error = e;
    } finally {
      clearTimeout(timer);
      ctx.shutdown.removeEventListener("abort", abortRequest);
    }
    if (!(error instanceof PlatformError)) throw error;
    const failure = error;
    if (ctx.shutdown.aborted) {
      throw new PlatformError("Cannot enroll: interrupted; nothing was stored", {
        kind: "aborted",
      }, { cause: error });
    }
    if (isEnrollmentRejection(error)) {
      throw new CredentialRejectedError(
        `Cannot enroll: ${describeAnswer(error)}; ask for a new enrollment token`,
        { cause: error },
      );
    }
    const giveUp = (why: string) =>
      new PlatformError(
        `Cannot enroll: ${why}: ${failure.message}${
          notRejectedNote(failure, ENROLLMENT_REJECTION_STATUSES, "gave up")
        }`,
        failure,
        { cause: failure },
      );
    if (budget.signal.aborted) {
      throw giveUp(`gave up after ${timeoutSeconds} s (--timeout) and ${attempt} attempts`);
    }
    const unusable = error.kind === "invalid_response" || error.kind === "response_too_large";
    if (unusable && error.httpStatus !== undefined && error.httpStatus < 300) {
      // The platform said yes, so the token is likely spent even though the answer is unusable.
      throw new PlatformError(
        `Cannot enroll: refusing the platform's answer: ${failure.message}; ${TOKEN_SPENT_HINT}`,
        failure,
        { cause: failure },
      );
    }
    if (!isRetryable(error)) {
      throw new PlatformError(`Cannot enroll: ${failure.message}`, failure, { cause: failure });
    }
    const floor = error.retryAfterSeconds ?? 0;
    const delaySeconds = failureDelay(attempt, deps.random, error.retryAfterSeconds);
    const remainingSeconds = (deadline - deps.now()) / 1000;
    if (delaySeconds >= remainingSeconds) {
      throw giveUp(
        floor >= remainingSeconds
          ? `platform asked to retry after ${floor} s, beyond --timeout ${timeoutSeconds} s (${attempt} attempts)`
          : `gave up after ${timeoutSeconds} s (--timeout) and ${attempt} attempts`,
      );
    }
    ctx.logger.warn("Enrollment attempt failed; retrying", {
      attempt,
      retry_in_seconds: Math.round(delaySeconds * 10) / 10,
      error: `${error.message}${notRejectedNote(error, ENROLLMENT_REJECTION_STATUSES)}`,
    });
    try {
      await deps.sleep(delaySeconds * 1000, ctx.shutdown);
    } catch {
      throw new PlatformError("Cannot enroll: interrupted; nothing was stored", {
        kind: "aborted",
      }, { cause: error });
    }
  }
}

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

async function deleteTokenFile(
  fs: FileSystem,
  path: string,
  logger: Logger,
): Promise<void> {
  try {
    await fs.remove(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    logger.warn(
      `Could not delete the used enrollment token file ${
        JSON.stringify(path)
      }; delete it yourself (${errorMessage(e)})`,
      { path },
    );
  }
}

/** Makes the key pair, asks the platform, and verifies its answer; stores nothing. */
async function obtainIdentity(
  ctx: CommandContext,
  options: EnrollOptions,
  deps: EnrollDeps,
  baseUrl: URL,
  token: TokenSource,
  bootstrapCa: string[] | undefined,
  trust: Trust,
): Promise<{ identity: Identity; features: string[] }> {
  const { logger, config } = ctx;
  const host = await deps.collectHost(logger);
  const hostname = host.hostname ?? deps.hostname();
  if (!hostname) {
    throw new UsageError("Cannot enroll: cannot determine this host's name for the certificate");
  }
  logger.info("Generating key", { algorithm: "ECDSA P-256" });
  const keys = await generateAgentKeyPair();
  const privateKeyPem = await exportPrivateKeyPem(keys.privateKey);
  registerSecret(privateKeyPem);
  const csr = await createCsr(keys, hostname);

  logger.info("Contacting platform", { url: baseUrl.href });
  const body: EnrollRequest = {
    enrollment_token: token.token,
    csr,
    host,
    agent_version: VERSION,
  };
  const clock = new ClockOffset(logger);
  const client = await deps.createClient({
    baseUrl,
    caCertificates: bootstrapCa,
    rootStore: rootStoreOf(trust),
    proxyUrl: config.proxyUrl,
    proxyPac: config.proxyPac,
    clock,
    env: ctx.env,
    timeoutMs: Math.min(config.timeoutSeconds, options.timeoutSeconds) * 1000,
    logger,
  });
  let answer: EnrollResponse;
  try {
    answer = await requestWithRetries(ctx, client, body, options.timeoutSeconds, deps);
  } finally {
    client.close();
  }

  const parsed = EnrollResponseSchema.safeParse(answer);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.map(String).join(".") || "body";
    throw rejectedAnswer(`"${field}" ${issue?.message ?? "is invalid"}`);
  }
  const response = parsed.data;
  registerSecret(response.service_account_token);
  let validity: VerifiedCertificate;
  try {
    validity = await verifyIssuedCertificate({
      certificatePem: response.certificate,
      caCertificatePems: response.ca_certificates,
      publicKey: keys.publicKey,
      now: deps.now(),
      clock: clock.latest,
    });
  } catch (e) {
    if (e instanceof CertificateCheckError) {
      // The platform accepted the token before its answer could be checked: say that a new token
      // needs the cause fixed first, or it is spent the same way.
      throw rejectedAnswer(
        e.message,
        " once the cause is fixed (the same answer would spend it too)",
      );
    }
    throw e;
  }

  const identity: Identity = {
    version: 1,
    agent_id: response.agent_id,
    platform_url: baseUrl.href,
    certificate: validity.leafPem,
    intermediate_certificates: validity.intermediatePems,
    ca_certificates: response.ca_certificates,
    bootstrap_ca_certificates: bootstrapCa ?? [],
    private_key: privateKeyPem,
    service_account_token: response.service_account_token,
    machine_id: host.machine_id,
    enrolled_at: new Date(deps.now()).toISOString(),
    heartbeat_interval_seconds: response.heartbeat_interval_seconds ?? 60,
    certificate_not_before: validity.notBefore.toISOString(),
    certificate_not_after: validity.notAfter.toISOString(),
    trust,
  };
  return { identity, features: response.features ?? [] };
}

/**
 * What enrollment trusts for the platform's server: the `--ca-file` bundle, the presented CA
 * certificates matching `--ca-pin` (read before anything is sent), or the OS trust store.
 */
export async function enrollmentTrust(
  ctx: CommandContext,
  options: EnrollOptions,
  deps: Pick<EnrollDeps, "fs" | "pinnedCas"> = defaultDeps,
  baseUrl: URL,
): Promise<{ trust: Trust; cas: string[] | undefined }> {
  const { config, logger } = ctx;
  const rawPins = (options.caPins ?? []).filter((p) => p.trim() !== "");
  if (config.caFile !== undefined) {
    if (rawPins.length > 0) {
      throw new UsageError("Cannot enroll: pass --ca-file or --ca-pin, not both");
    }
    return { trust: { source: "ca_file" }, cas: await readBootstrapCa(deps.fs, config.caFile) };
  }
  if (rawPins.length > 0) {
    const { parseCaPin } = await import("../trust/ca_pin.ts");
    const pins = [...new Set(rawPins.map((p) => parseCaPin(p)))];
    if (baseUrl.protocol !== "https:") {
      throw new UsageError("Cannot enroll: --ca-pin needs an https:// platform URL");
    }
    const { proxyForUrl } = await import("../proxy/proxy_select.ts");
    if (
      config.proxyPac !== undefined || proxyForUrl(baseUrl, ctx.env, config.proxyUrl) !== undefined
    ) {
      throw new UsageError(
        "Cannot enroll: --ca-pin reads the platform's certificates over a direct connection, and a proxy is configured; pass --ca-file with the platform's CA instead",
      );
    }
    let cas: string[];
    try {
      cas = await deps.pinnedCas(baseUrl, pins, config.timeoutSeconds * 1000);
    } catch (e) {
      if (!(e instanceof PlatformError)) throw e;
      throw new PlatformError(`Cannot enroll: ${e.message}`, e, { cause: e });
    }
    return { trust: { source: "ca_pin", ca_pins: pins }, cas };
  }
  const trust: Trust = { source: "system" };
  logger.warn(
    `Trusting ${
      describeTrust(trust)
    } for the platform's server (no --ca-file or --ca-pin); pin the platform's CA with --ca-pin to trust only it`,
  );
  return { trust, cas: undefined };
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
 * `oneconnect-agent enroll`: exchanges a one-time token for this host's identity. The key pair is
 * made here and never leaves the host; the answer is verified before anything is written, and an
 * existing identity is replaced (with `--force`) only by one atomic rename.
 */
export async function enrollCommand(
  ctx: CommandContext,
  options: EnrollOptions,
  overrides: Partial<EnrollDeps> = {},
): Promise<void> {
  const deps: EnrollDeps = { ...defaultDeps, ...overrides };
  const { logger, config } = ctx;
  if (options.check) {
    // Before anything else: the check must not read, let alone spend, the enrollment token.
    const { preflightCommand } = await import("./preflight.ts");
    return await preflightCommand(ctx, {
      timeoutSeconds: options.timeoutSeconds,
      caPins: options.caPins,
    });
  }
  const baseUrl = config.platformUrl;
  if (baseUrl === undefined) {
    throw new UsageError(
      "Cannot enroll: no platform URL; pass --url https://<platform> or set ONECONNECT_PLATFORM_URL",
    );
  }
  const store = new IdentityStore(config.stateDir, { fs: deps.fs, logger, ...deps.store });
  await store.auditPermissions();
  const replacing = await store.exists();
  if (replacing && !options.force) {
    // Loading reports a corrupt or unsafe file as such; a sound one is "already enrolled".
    const existing = await store.load();
    throw new AlreadyEnrolledError(
      `Already enrolled as ${JSON.stringify(existing.agent_id)} in ${
        JSON.stringify(store.stateDir)
      }; pass --force to enroll anew and replace it`,
    );
  }

  const { trust, cas: bootstrapCa } = await enrollmentTrust(ctx, options, deps, baseUrl);
  const token = await resolveToken(ctx, options, store, deps.fs);
  const createdStateDir = !(await fileExists(deps.fs, config.stateDir));
  // Before the token is spent: a state directory we cannot write must fail now, not after.
  await store.ensureStateDir();
  // Before the token is spent: a running service (or renew) must not write the identity too.
  await using lock = await acquireStateLock(config.stateDir, {
    command: "enroll",
    action: "Cannot enroll",
    logger,
  });
  // Nothing stored: leave no empty state directory behind either (the remove is non-recursive).
  const cleanUp = async () => {
    await lock.release();
    if (createdStateDir) await deps.fs.remove(config.stateDir).catch(() => {});
  };
  let identity: Identity;
  let features: string[];
  try {
    await assertStateDirWritable(deps.fs, store);
    ({ identity, features } = await obtainIdentity(
      ctx,
      options,
      deps,
      baseUrl,
      token,
      bootstrapCa,
      trust,
    ));
    await proveIdentity(ctx, deps, identity);
  } catch (e) {
    await cleanUp();
    throw e;
  }
  try {
    await store.save(identity);
  } catch (e) {
    await cleanUp();
    if (!(e instanceof UsageError)) throw e;
    throw new UsageError(`${e.message}; the enrollment token is probably used up`, { cause: e });
  }
  if (replacing) {
    // The old agent's heartbeat status (sequence, failures) says nothing about the new identity.
    const statusPath = store.secretFilePath(STATUS_FILE_NAME);
    await deps.fs.remove(statusPath).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) {
        const error = errorMessage(e);
        logger.warn(`Could not remove the old identity's status ${JSON.stringify(statusPath)}`, {
          error,
        });
      }
    });
  }
  if (features.length > 0) {
    // So that the first heartbeat of the first run already uses what the platform supports.
    const status = new StatusStore(store.secretFilePath(STATUS_FILE_NAME), {
      ...emptyStatus(identity.agent_id),
      platform_features: features,
    }, { fs: deps.fs });
    await status.save().catch((e) => logger.warn(`Cannot write status file: ${errorMessage(e)}`));
  }
  if (token.file !== undefined) await deleteTokenFile(deps.fs, token.file, logger);

  logger.info(`Enrolled as ${JSON.stringify(identity.agent_id)}`, {
    agent_id: identity.agent_id,
    certificate_not_after: identity.certificate_not_after,
    replaced: replacing,
  });
  ctx.stdout(`enrolled as ${identity.agent_id}\n`);
}
