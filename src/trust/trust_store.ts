/**
 * The one place that decides which root certificates Deno adds to a client's own CA set.
 *
 * Deno 2.9.6 builds one root store per process, lazily, when the first TLS client is made
 * (`cli/lib/args.rs` `get_root_cert_store`): the stores named by `DENO_TLS_CA_STORE` (default
 * `mozilla`; `system` reads the OS store, which honours `SSL_CERT_FILE` on Linux; 2.9.6 ignores
 * `SSL_CERT_DIR`, cleared too for a Deno that reads it), then the `--cert` flag or else `DENO_CERT` (a file or `base64:` data), then
 * `NODE_EXTRA_CA_CERTS`. Every client's `caCerts` are added to that store. `SSLKEYLOGFILE` is
 * read earlier, at start-up, and makes every TLS session key readable to whoever reads that file.
 * So the agent clears those variables before anything can build the store, chooses the store
 * itself for the first client, and refuses to run (exit 2) when it cannot be sure of the result.
 */
import { PlatformError, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";

/** Which of Deno's root stores a client trusts besides its own CA certificates. */
export type RootStore = "none" | "mozilla" | "system";

/** Variables Deno reads when it builds its root store (see the module comment); the agent clears them. */
export const TRUST_VARIABLES = [
  "DENO_CERT",
  "NODE_EXTRA_CA_CERTS",
  "DENO_TLS_CA_STORE",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
] as const;

/** Read by Deno at start-up: TLS session keys are appended to the file it names. */
const KEY_LOG_VARIABLE = "SSLKEYLOGFILE";

const STORE_VALUE: Record<RootStore, string> = { none: ",", mozilla: "mozilla", system: "system" };
const PERMISSIONS_HINT = "see tasks/permissions.flags";

interface TrustState {
  /** Set by {@linkcode neutraliseTrustEnvironment}: this process is the agent, not a test. */
  armed: boolean;
  /** Trust variables that were set when the process started. */
  startup: string[];
  /** The store Deno built, once the first client exists. */
  store: RootStore | undefined;
  /** `SSLKEYLOGFILE` as it was at start-up (Deno opened it then). */
  keyLog: string | undefined;
}

const state: TrustState = { armed: false, startup: [], store: undefined, keyLog: undefined };

function envGranted(name: string): boolean {
  try {
    // Query first: with a narrow --allow-env list, touching an unlisted variable would prompt.
    return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Called first by `src/main.ts`: notes `SSLKEYLOGFILE` (refused when a client is made), and
 * removes every variable Deno would build its root store from, so that nothing made later (a client, a fetch) can trust
 * what the environment names. Throws {@linkcode UsageError} (exit 2) when it cannot do so.
 */
export function neutraliseTrustEnvironment(): void {
  for (const name of [KEY_LOG_VARIABLE, ...TRUST_VARIABLES]) {
    if (!envGranted(name)) {
      throw new UsageError(
        `Cannot guarantee that only the pinned CAs are trusted: no permission to read and clear ${name}; run with --allow-env including ${name} (${PERMISSIONS_HINT})`,
      );
    }
  }
  const keyLog = Deno.env.get(KEY_LOG_VARIABLE);
  state.keyLog = keyLog === "" ? undefined : keyLog;
  state.startup = [];
  for (const name of TRUST_VARIABLES) {
    if (Deno.env.get(name) !== undefined) {
      state.startup.push(name);
      Deno.env.delete(name);
    }
  }
  // An empty store until a command selects one: whatever builds the store early (the module
  // loader fetching npm packages, a fetch) then trusts nothing rather than the environment.
  Deno.env.set("DENO_TLS_CA_STORE", STORE_VALUE.none);
  state.armed = true;
  assertStoreNotBuilt();
}

/**
 * The variables Deno builds its root store from that were set when the agent started (it has
 * cleared them since, and set `DENO_TLS_CA_STORE` itself); `undefined` before
 * {@linkcode neutraliseTrustEnvironment} (a test process).
 */
export function trustVariablesAtStartup():
  | { names: readonly string[]; all: readonly string[] }
  | undefined {
  return state.armed ? { names: [...state.startup], all: TRUST_VARIABLES } : undefined;
}

/**
 * Chooses the root store for this process before anything can build it (a command calls this
 * before loading its modules: in `deno run` the module loader builds the store when it loads npm
 * packages). Later clients wanting another store are refused or warned about, see
 * {@linkcode createRootedHttpClient}.
 */
export function selectRootStore(roots: RootStore): void {
  if (state.store !== undefined) return;
  state.store = roots;
  if (state.armed) Deno.env.set("DENO_TLS_CA_STORE", STORE_VALUE[roots]);
}

/**
 * Proves that Deno has not built its root store yet: with `DENO_CERT` naming a missing file, a
 * first build fails. A client made without error means the store already exists, built from an
 * environment the agent never saw (a module download or preloaded code before `main.ts`), or
 * from the `--cert` flag. A `deno compile` binary is skipped: it caches even a failed build,
 * and nothing runs in it before `main.ts`.
 */
function assertStoreNotBuilt(): void {
  if (Deno.build.standalone) return;
  Deno.env.set("DENO_CERT", "/nonexistent/oneconnect-agent/root-store-probe.pem");
  // With DENO_CERT naming a missing file, a first build fails (and is not cached by `deno run`).
  let early: Deno.HttpClient | undefined;
  try {
    early = Deno.createHttpClient({});
  } catch {
    return;
  } finally {
    Deno.env.delete("DENO_CERT");
  }
  early.close();
  const startup = state.startup.filter((name) => name !== "DENO_TLS_CA_STORE");
  const what = startup.length > 0 ? `, with ${startup.join(" and ")} set` : "";
  const fix = startup.length > 0
    ? `unset ${startup.join(" and ")} in the agent's environment, `
    : "";
  throw new UsageError(
    `Cannot guarantee that only the pinned CAs are trusted: Deno built its root certificate store before the agent started${what} (or was given --cert); ${fix}do not pass --cert or preload code, and start it again`,
  );
}

/**
 * The TLS options of a client for `target` (`host:port`): the pinned CA set, refused when empty or
 * not PEM (Deno skips what it cannot parse, so every handshake would fail later), and the client
 * certificate in mTLS mode.
 */
export function tlsClientOptions(
  target: string,
  pins: string[] | undefined,
  clientCertificate?: Deno.TlsCertifiedKeyPem,
): Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem> {
  const options: Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem> = {};
  if (pins !== undefined) {
    const bad = pins.findIndex((pem) => !pem.includes("-----BEGIN CERTIFICATE-----"));
    if (pins.length === 0 || bad >= 0) {
      const what = JSON.stringify(target);
      throw new PlatformError(
        pins.length === 0
          ? `cannot set up TLS for ${what}: the pinned CA set is empty`
          : `cannot set up TLS for ${what}: pinned CA entry ${bad + 1} is not a PEM certificate`,
        { kind: "tls" },
      );
    }
    options.caCerts = pins;
  }
  if (clientCertificate) {
    options.cert = clientCertificate.cert;
    options.key = clientCertificate.key;
  }
  return options;
}

function wider(have: RootStore, want: RootStore): boolean {
  return have !== want && have !== "none";
}

/**
 * Makes a Deno HTTP client trusting its `caCerts` plus exactly the `roots` store. The first
 * client of the process decides Deno's store; a later client wanting a narrower one than that
 * is refused (it would silently trust more), one wanting a wider one is warned about (its
 * handshakes fail closed).
 */
export function createRootedHttpClient(
  options: Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem>,
  roots: RootStore,
  logger: Logger,
): Deno.HttpClient {
  if (state.keyLog !== undefined) {
    throw new UsageError(
      `Refusing TLS with ${KEY_LOG_VARIABLE} set: Deno writes every TLS session key to ${
        JSON.stringify(state.keyLog)
      }, which would expose the agent's credentials; unset it in the agent's environment`,
    );
  }
  if (state.store !== undefined) {
    if (wider(state.store, roots)) {
      throw new UsageError(
        `Cannot guarantee that only the pinned CAs are trusted: this process already trusts the ${state.store} root store`,
      );
    }
    if (state.store !== roots) {
      logger.warn(`The ${roots} root store is unavailable in this process after pinning`);
    }
    return Deno.createHttpClient(options);
  }
  const writable = TRUST_VARIABLES.every((name) => envGranted(name));
  if (!writable) {
    if (state.armed || roots === "none") {
      throw new UsageError(
        `Cannot guarantee that only the pinned CAs are trusted: no permission to set ${
          TRUST_VARIABLES.join(", ")
        } (${PERMISSIONS_HINT})`,
      );
    }
    state.store = "mozilla";
    return Deno.createHttpClient(options);
  }
  if (state.armed) {
    // neutraliseTrustEnvironment cleared the variables: only the selected store is named.
    selectRootStore(roots);
    return createRootedHttpClient(options, roots, logger);
  }
  // Outside the agent (tests, tools) the caller's environment is put back afterwards.
  const saved = TRUST_VARIABLES.map((name) => [name, Deno.env.get(name)] as const);
  for (const name of TRUST_VARIABLES) Deno.env.delete(name);
  Deno.env.set("DENO_TLS_CA_STORE", STORE_VALUE[roots]);
  try {
    const client = Deno.createHttpClient(options);
    state.store = roots;
    return client;
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}
