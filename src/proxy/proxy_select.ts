/**
 * Which proxy (if any) the agent uses to reach the platform, and from where that came: agent.json
 * `proxy_url`, then the environment, then a PAC file, then the OS setting, then direct. A plain
 * http:// platform (loopback only) is never proxied. PAC and OS code load only when configured.
 */
import { errorMessage, PlatformError } from "../errors.ts";
import { type Logger, registerSecret } from "../log.ts";
import { matchesNoProxy } from "./no_proxy.ts";
import {
  bareProxyUrl,
  isSocksProxy,
  type OsProxyDecision,
  parseProxyUrl,
  type ProxyHop,
} from "./proxy_hop.ts";

/** The hops to try in order (the next after a connection failure), and where they came from. */
export interface ProxyDecision {
  hops: ProxyHop[];
  /** E.g. `agent.json proxy_url`, `environment HTTPS_PROXY`, `PAC http://wpad/proxy.pac`. */
  source: string;
  /** Why a configured source (a PAC, the OS setting) could not be used, if so. */
  problem?: string;
}

/** Where proxy settings come from; the lookups that need code or processes are seams. */
export interface ProxySettings {
  /** `proxy_url` in agent.json. */
  proxyUrl?: URL;
  /** `proxy_pac_url` in agent.json, `--proxy-pac` or ONECONNECT_PROXY_PAC: a URL or a file. */
  pac?: string;
  env: (name: string) => string | undefined;
  os?: typeof Deno.build.os;
  logger?: Logger;
  /** Evaluates the PAC for `target` (default: `src/proxy/pac.ts`, loaded only then). */
  evaluatePac?: (pac: string, target: URL, signal?: AbortSignal) => Promise<ProxyHop[]>;
  /** Reads the OS proxy setting (default: `src/proxy/os_proxy.ts` on Windows and macOS). */
  readOsProxy?: (target: URL, signal?: AbortSignal) => Promise<OsProxyDecision | undefined>;
}

const DIRECT: ProxyHop = { kind: "direct" };

/**
 * The decision that needs no PAC and no OS lookup, or undefined when those must be consulted.
 */
function decideWithoutLookups(
  target: URL,
  settings: Pick<ProxySettings, "proxyUrl" | "pac" | "env" | "os" | "readOsProxy">,
): ProxyDecision | undefined {
  if (target.protocol === "http:") {
    // The bearer token travels in clear text: it must not leave the host, not even to a proxy.
    return { hops: [DIRECT], source: "plain http:// (loopback only) is never proxied" };
  }
  const noProxy = firstEnv(settings.env, "NO_PROXY", "no_proxy");
  if (noProxy !== undefined && matchesNoProxy(target.hostname, noProxy.value)) {
    return { hops: [DIRECT], source: `environment ${noProxy.name}` };
  }
  if (settings.proxyUrl) {
    return { hops: [{ kind: "proxy", url: settings.proxyUrl }], source: "agent.json proxy_url" };
  }
  const fromEnv = envProxy(target, settings.env);
  if (fromEnv) return { hops: [{ kind: "proxy", url: fromEnv.url }], source: fromEnv.source };
  if (settings.pac !== undefined) return undefined;
  if (settings.readOsProxy || settings.os === "windows" || settings.os === "darwin") {
    return undefined;
  }
  return { hops: [DIRECT], source: "no proxy configured" };
}

/**
 * The proxy decision for one platform URL, made once and kept: PAC and OS lookups run again
 * only after {@linkcode invalidate} (every hop failed to connect). No PAC evaluator outlives a
 * decision.
 */
export class ProxyRoute {
  readonly target: URL;
  readonly #settings: ProxySettings;
  #decision: ProxyDecision | undefined;

  constructor(target: URL, settings: ProxySettings) {
    this.target = target;
    this.#settings = settings;
    this.#decision = decideWithoutLookups(target, settings);
  }

  /** The decision when it is known without a lookup (or already looked up). */
  get known(): ProxyDecision | undefined {
    return this.#decision;
  }

  /**
   * The decision, looking up the PAC or the OS setting if needed. `signal` (the agent stopping,
   * a request's deadline) ends a PAC download or evaluation at once; nothing is then decided.
   */
  async decide(signal?: AbortSignal): Promise<ProxyDecision> {
    this.#decision ??= await this.#lookup(signal);
    return this.#decision;
  }

  /** Forgets a looked-up decision so that the next {@linkcode decide} evaluates again. */
  invalidate(): void {
    if (decideWithoutLookups(this.target, this.#settings) === undefined) {
      this.#decision = undefined;
    }
  }

  async #lookup(signal?: AbortSignal): Promise<ProxyDecision> {
    const s = this.#settings;
    const problems: string[] = [];
    if (s.pac !== undefined) {
      const what = `PAC ${JSON.stringify(s.pac)}`;
      try {
        const evaluate = s.evaluatePac ??
          (async (pac: string, target: URL, signal?: AbortSignal) =>
            (await import("./pac.ts")).pacHops(pac, target, undefined, signal));
        return { hops: await evaluate(s.pac, this.target, signal), source: what };
      } catch (e) {
        if (signal?.aborted) throw e;
        // Like browsers: a broken PAC is not fatal; the lookup goes on and the reason is shown.
        problems.push(`${what} failed: ${errorMessage(e)}`);
        s.logger?.warn(`Ignoring proxy settings: ${problems.at(-1)}`);
      }
    }
    const readOs = s.readOsProxy ??
      (s.os === "windows" || s.os === "darwin"
        ? async (target: URL, signal?: AbortSignal) =>
          (await import("./os_proxy.ts")).readOsProxy(s.os!, target, undefined, undefined, signal)
        : undefined);
    if (readOs) {
      try {
        const fromOs = await readOs(this.target, signal);
        if (fromOs) return fromOs;
      } catch (e) {
        if (signal?.aborted) throw e;
        problems.push(`the OS proxy setting could not be read: ${errorMessage(e)}`);
        s.logger?.warn(`Ignoring proxy settings: ${problems.at(-1)}`);
      }
    }
    const problem = problems.length > 0 ? problems.join("; ") : undefined;
    return {
      hops: [DIRECT],
      source: "no usable proxy setting",
      ...(problem ? { problem } : {}),
    };
  }
}

/** One line for `enroll --check`: `http://proxy:3128 (from PAC "...")`, credentials removed. */
export function describeDecision(decision: ProxyDecision): string {
  const hops = decision.hops.map((hop) => hop.kind === "direct" ? "direct" : bareProxyUrl(hop.url));
  const problem = decision.problem ? `; ${decision.problem}` : "";
  return `${hops.join(", then ")} (from ${decision.source}${problem})`;
}

/**
 * Deno client options for going through the proxy `url`, the proxy without credentials, and the
 * `Proxy-Authorization` value its credentials make (registered as secrets, as is the password).
 */
export function proxyClientOptions(
  url: URL,
): { proxy: Deno.Proxy; bare: URL; authorization?: string } {
  const username = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  registerSecret(password);
  let authorization: string | undefined;
  if (username || password) {
    authorization = `Basic ${btoa(`${username}:${password}`)}`;
    registerSecret(authorization);
  }
  const bare = new URL(bareProxyUrl(url));
  const proxy: Deno.Proxy = {
    transport: isSocksProxy(bare) ? "socks5" : bare.protocol === "https:" ? "https" : "http",
    url: bareProxyUrl(bare),
    ...(username || password ? { basicAuth: { username, password } } : {}),
  };
  return { proxy, bare, ...(authorization ? { authorization } : {}) };
}

// Deno reads HTTP(S)_PROXY, ALL_PROXY and NO_PROXY from the real environment when a client is
// made, outside --allow-env, and NO_PROXY even overrides an explicit proxy. While the client is
// made, NO_PROXY is set so that Deno follows this module's decision: everything for a direct hop
// (`*` matches names only, hence the two catch-all networks), nothing for a proxy hop.
const DENO_NO_PROXY_DIRECT = "*,0.0.0.0/0,::/0";

/**
 * Runs `make` (which creates a `Deno.HttpClient`) with NO_PROXY set so that the client goes
 * `direct` or through its explicit proxy only, whatever the environment says; restores it after.
 * Fails when the variable cannot be written and the client would otherwise follow it.
 */
export function withDecidedProxyEnv<T>(direct: boolean, make: () => T): T {
  let previous: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "NO_PROXY" }).state !== "granted") {
      throw new Error("no permission");
    }
    previous = Deno.env.get("NO_PROXY");
    Deno.env.set("NO_PROXY", direct ? DENO_NO_PROXY_DIRECT : "");
  } catch {
    throw new PlatformError(
      "cannot make the HTTP client ignore the proxy environment variables: NO_PROXY is not in --allow-env",
      { kind: "network" },
    );
  }
  try {
    return make();
  } finally {
    if (previous === undefined) Deno.env.delete("NO_PROXY");
    else Deno.env.set("NO_PROXY", previous);
  }
}

/**
 * The proxy a request to `target` goes through according to `proxyUrl` and the environment, or
 * undefined for a direct connection: `NO_PROXY` first, then the explicit `proxyUrl`, then
 * `HTTPS_PROXY` (https) or `HTTP_PROXY` (http), either case. Plain http:// is never proxied.
 */
export function proxyForUrl(
  target: URL,
  env: (name: string) => string | undefined,
  proxyUrl?: URL,
): URL | undefined {
  const decision = decideWithoutLookups(target, { env, proxyUrl, os: "linux" });
  const hop = decision?.hops[0];
  return hop?.kind === "proxy" ? hop.url : undefined;
}

function envProxy(
  target: URL,
  env: (name: string) => string | undefined,
): { url: URL; source: string } | undefined {
  const found = target.protocol === "https:"
    ? firstEnv(env, "HTTPS_PROXY", "https_proxy")
    : firstEnv(env, "HTTP_PROXY", "http_proxy");
  if (found === undefined) return undefined;
  // An unusable value is an error naming the variable, never a silent direct connection.
  return { url: parseProxyUrl(found.value, found.name), source: `environment ${found.name}` };
}

function firstEnv(env: (name: string) => string | undefined, ...names: string[]) {
  for (const name of names) {
    const value = env(name)?.trim();
    if (value) return { name, value };
  }
  return undefined;
}
