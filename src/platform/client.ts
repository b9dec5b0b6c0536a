/**
 * The only code that talks to the platform: one pooled HTTP client with the pinned CA set, the
 * client certificate in mTLS mode, proxies, and hardening against a broken or hostile server
 * (timeouts, size cap, no redirects, typed errors that never carry a secret).
 */
import {
  agentPath,
  type EnrollRequest,
  type EnrollResponse,
  EnrollResponseSchema,
  type HealthResponse,
  HealthResponseSchema,
  type HeartbeatBody,
  type HeartbeatResponse,
  HeartbeatResponseSchema,
  type RenewRequest,
  type RenewResponse,
  RenewResponseSchema,
} from "../wire/contract.ts";
import { clockHint, type ClockOffset } from "../wire/clock_offset.ts";
import { type Answer, platformError, q, validateAnswer } from "./responses.ts";
import { readAnswer } from "./read_answer.ts";
import { RequestSignal } from "./request_signal.ts";
import {
  classifyTransportError,
  hostPort,
  isConnectFailure,
  isUntrustedIssuer,
} from "./transport_errors.ts";
import { AgentError, errorMessage, type PlatformError } from "../errors.ts";
import { type Logger, registerSecret, silentLogger } from "../log.ts";
import {
  proxyClientOptions,
  type ProxyDecision,
  ProxyRoute,
  withDecidedProxyEnv,
} from "../proxy/proxy_select.ts";
import { bareProxyUrl, isSocksProxy, type ProxyHop } from "../proxy/proxy_hop.ts";
import { createRootedHttpClient, type RootStore, tlsClientOptions } from "../trust/trust_store.ts";
import { USER_AGENT } from "../version.ts";

/** How requests authenticate: nothing (enroll, health), the bearer token, or the client certificate. */
export type PlatformAuth =
  | { kind: "none" }
  | { kind: "bearer"; token: string }
  | { kind: "mtls"; certificatePem: string; privateKeyPem: string };

/** Options for {@linkcode PlatformClient}. */
export interface PlatformClientOptions {
  /** Platform base URL with a trailing slash (from `parsePlatformUrl`); paths are appended. */
  baseUrl: URL;
  /** Pinned CA certificates (PEM); trusted with {@linkcode rootStore}. */
  caCertificates?: string[];
  /** How errors name `caCertificates`, e.g. `the CA file` (default `the trusted CA bundle`). */
  caLabel?: string;
  /** Deno root store trusted besides `caCertificates`: default none when pinned, else mozilla. */
  rootStore?: RootStore;
  /** Default none; the bearer header is sent only in bearer mode. */
  auth?: PlatformAuth;
  /** Explicit proxy (`proxy_url` in agent.json); otherwise HTTPS_PROXY/HTTP_PROXY/NO_PROXY. */
  proxyUrl?: URL;
  /** PAC file (URL or path), consulted after `proxyUrl` and the environment. */
  proxyPac?: string;
  /** The proxy decision to follow instead of one made from `proxyUrl`, `proxyPac` and `env`. */
  proxyRoute?: ProxyRoute;
  /** Measures the platform's clock from every answer's `Date` header. */
  clock?: ClockOffset;
  /** Reads an environment variable (proxy settings); defaults to `Deno.env.get`. */
  env?: (name: string) => string | undefined;
  /** Whole-request timeout in milliseconds, body included (default 15000). */
  timeoutMs?: number;
  /** Largest response body accepted (default 1 MiB). */
  maxResponseBytes?: number;
  logger?: Logger;
  /** Current time in ms, for `Retry-After` HTTP-dates. */
  now?: () => number;
}

/** One request of {@linkcode PlatformClient}. */
interface PlatformRequest {
  method: "GET" | "POST" | "DELETE";
  /** Relative to the base URL. */
  path: string;
  /** Sends the bearer token (bearer mode); enroll and health go without. */
  authenticated: boolean;
  signal?: AbortSignal;
  /** Sent as JSON. */
  body?: unknown;
}

/** Whole-request timeout when none is given. */
const DEFAULT_TIMEOUT_MS = 15_000;
/** Response body cap when none is given: platform answers are a few hundred bytes. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/** A client for platform contract v1; dispose it (or call close) to release its connections. */
export class PlatformClient implements Disposable {
  /** How the platform is reached: the proxy decision and where it came from. */
  readonly route: ProxyRoute;
  readonly #baseUrl: URL;
  readonly #auth: PlatformAuth;
  /** The pinned CA set (undefined: a root store) and how errors name it. */
  readonly #pins: { cas?: string[]; label?: string };
  readonly #rootStore: RootStore;
  readonly #timeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #clientOptions: Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem>;
  readonly #clock: ClockOffset | undefined;
  readonly #target: string;
  /** `Proxy-Authorization` for the proxy, kept only to read a refused certificate through it. */
  #proxyAuthorization: string | undefined;
  #client: Deno.HttpClient | undefined;
  #hops: ProxyHop[] = [];
  #hop = 0;
  #proxy: URL | undefined;
  #closed = false;

  /** Creates the one HTTP client (connection pool) used for this instance's whole life. */
  constructor(options: PlatformClientOptions) {
    this.#baseUrl = new URL(options.baseUrl.href);
    if (!this.#baseUrl.pathname.endsWith("/")) this.#baseUrl.pathname += "/";
    this.#auth = options.auth ?? { kind: "none" };
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
    this.#target = hostPort(this.#baseUrl);
    if (this.#auth.kind === "bearer") registerSecret(this.#auth.token);
    if (this.#auth.kind === "mtls") registerSecret(this.#auth.privateKeyPem);

    const env = options.env ?? ((name: string) => Deno.env.get(name));
    this.#clock = options.clock;
    this.route = options.proxyRoute ?? new ProxyRoute(this.#baseUrl, {
      proxyUrl: options.proxyUrl,
      pac: options.proxyPac,
      env,
      os: Deno.build.os,
      logger: this.#logger,
    });
    const pins = options.caCertificates;
    this.#pins = { cas: pins, label: options.caLabel };
    this.#rootStore = options.rootStore ?? (pins !== undefined ? "none" : "mozilla");
    // poolIdleTimeout is left at its default on purpose: setting it spins the event loop (#29444).
    this.#clientOptions = tlsClientOptions(
      this.#target,
      pins,
      this.#auth.kind === "mtls"
        ? { cert: this.#auth.certificatePem, key: this.#auth.privateKeyPem }
        : undefined,
    );
    // Without a PAC or OS lookup the client exists from the start (and a bad input throws here).
    const known = this.route.known;
    if (known) this.#follow(known);
  }

  /** The proxy requests go through now (without credentials), or undefined when direct. */
  get proxy(): URL | undefined {
    return this.#proxy;
  }

  /** Makes the proxy decision (PAC, OS setting) if it is not made yet, and the client for it. */
  async decideRoute(): Promise<ProxyDecision> {
    const decision = await this.route.decide();
    if (this.#client === undefined) this.#follow(decision);
    return decision;
  }

  #follow(decision: ProxyDecision, hop = 0): void {
    this.#hops = decision.hops.length > 0 ? decision.hops : [{ kind: "direct" }];
    this.#hop = hop;
    const next = this.#hops[hop]!;
    const options = { ...this.#clientOptions };
    this.#proxy = undefined;
    this.#proxyAuthorization = undefined;
    if (next.kind === "proxy") {
      const hop = proxyClientOptions(next.url);
      options.proxy = hop.proxy;
      this.#proxy = hop.bare;
      this.#proxyAuthorization = hop.authorization;
    }
    const old = this.#client;
    this.#client = undefined;
    old?.close();
    try {
      this.#client = withDecidedProxyEnv(
        next.kind === "direct",
        () => createRootedHttpClient(options, this.#rootStore, this.#logger),
      );
    } catch (e) {
      if (e instanceof AgentError) throw e;
      // Deno's message names the broken input, never its contents; redact all the same.
      throw platformError(
        `cannot set up TLS for ${q(this.#target)}: ${errorMessage(e, true)}`,
        "tls",
        {},
        e,
      );
    }
    this.#logger.debug(this.#proxy ? "Using proxy" : "Connecting directly", {
      proxy: this.#proxy && bareProxyUrl(this.#proxy),
      source: decision.source,
    });
  }

  /** `POST api/v1/agents/enroll` (201). */
  async enroll(body: EnrollRequest, signal?: AbortSignal): Promise<EnrollResponse> {
    const answer = await this.#request({
      method: "POST",
      path: "api/v1/agents/enroll",
      authenticated: false,
      signal,
      body,
    });
    return validateAnswer(answer, EnrollResponseSchema);
  }

  /** `POST api/v1/agents/{id}/heartbeats` (200). */
  async heartbeat(
    agentId: string,
    body: HeartbeatBody,
    signal?: AbortSignal,
  ): Promise<HeartbeatResponse> {
    const path = agentPath(agentId, "/heartbeats");
    const answer = await this.#request({ method: "POST", path, authenticated: true, signal, body });
    return validateAnswer(answer, HeartbeatResponseSchema);
  }

  /** `POST api/v1/agents/{id}/certificate` (200): renewal with a new key pair. */
  async renewCertificate(
    agentId: string,
    body: RenewRequest,
    signal?: AbortSignal,
  ): Promise<RenewResponse> {
    const path = agentPath(agentId, "/certificate");
    const answer = await this.#request({ method: "POST", path, authenticated: true, signal, body });
    return validateAnswer(answer, RenewResponseSchema);
  }

  /** `DELETE api/v1/agents/{id}` (204): the platform forgets the agent. */
  async unenroll(agentId: string, signal?: AbortSignal): Promise<void> {
    const path = agentPath(agentId, "");
    await this.#request({ method: "DELETE", path, authenticated: true, signal });
  }

  /** `GET api/v1/health` (200), with the response `Date` header for the clock-skew check. */
  async health(signal?: AbortSignal): Promise<{ body: HealthResponse; date: string | null }> {
    const path = "api/v1/health";
    const answer = await this.#request({ method: "GET", path, authenticated: false, signal });
    return { body: validateAnswer(answer, HealthResponseSchema), date: answer.headers.get("date") };
  }

  /** Closes the connection pool; later requests fail as `aborted`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client?.close();
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** One request: the client's answer, or a `PlatformError` that says what went wrong where. */
  async #request(request: PlatformRequest): Promise<Answer> {
    const { method, path, signal, body } = request;
    if (this.#closed) throw platformError(`client for ${q(this.#target)} is closed`, "aborted");
    if (signal?.aborted) {
      throw platformError(`request to ${q(this.#target)} was aborted`, "aborted");
    }
    const url = new URL(path, this.#baseUrl);
    const headers = new Headers({ "User-Agent": USER_AGENT, "Accept": "application/json" });
    if (body !== undefined) headers.set("Content-Type", "application/json");
    if (request.authenticated && this.#auth.kind === "bearer") {
      headers.set("Authorization", `Bearer ${this.#auth.token}`);
    }
    using abort = new RequestSignal(this.#timeoutMs, signal);
    const started = performance.now();
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    const response = await this.#send(url, init, abort);
    this.#logger.debug("Platform answered", {
      method,
      path: url.pathname,
      status: response.status,
      ms: Math.round(performance.now() - started),
    });
    return await readAnswer(response, {
      method,
      baseUrl: this.#baseUrl,
      maxBytes: this.#maxResponseBytes,
      now: this.#now,
      mtls: this.#auth.kind === "mtls",
      bodyError: (e) => this.#transportError(e, abort.cause, "body"),
    });
  }

  /** Sends the request along the proxy decision, trying its next hop while nothing got through. */
  async #send(url: URL, init: RequestInit, abort: RequestSignal): Promise<Response> {
    for (;;) {
      if (this.#client === undefined) await this.#decideRouteWithin(abort);
      const sentWallMs = this.#now();
      try {
        const response = await fetch(url, {
          ...init,
          client: this.#client,
          redirect: "manual",
          signal: abort.signal,
        });
        this.#clock?.observe(response.headers.get("date"), sentWallMs, this.#now());
        return response;
      } catch (e) {
        await this.#failover(e, abort.cause);
      }
    }
  }

  /** The proxy decision made under the request's deadline (a PAC download, an OS lookup). */
  async #decideRouteWithin(abort: RequestSignal): Promise<void> {
    try {
      this.#follow(await this.route.decide(abort.signal));
    } catch (e) {
      if (abort.cause === undefined) throw e;
      throw this.#transportError(e, abort.cause, "connect");
    }
  }

  /**
   * After a failed send: returns when the decision's next hop may try, else throws the diagnosed
   * error (the decision forgotten when every hop failed).
   */
  async #failover(raw: unknown, cause: "timeout" | "aborted" | undefined): Promise<void> {
    const error = this.#transportError(raw, cause, "connect");
    if (cause !== undefined || !isConnectFailure(error)) throw await this.#diagnosed(error, raw);
    if (this.#hop + 1 < this.#hops.length) {
      // `PROXY a; PROXY b; DIRECT`: nothing reached the platform, so the next hop may retry.
      this.#logger.warn(`${error.message}; trying the next proxy of the decision`);
      this.#follow({ hops: this.#hops, source: "failover" }, this.#hop + 1);
      return;
    }
    // Every hop failed: the next request makes the decision again (PAC, OS setting).
    this.route.invalidate();
    if (this.route.known === undefined) {
      this.#client?.close();
      this.#client = undefined;
    } else if (this.#hop !== 0) {
      this.#follow(this.route.known);
    }
    throw await this.#diagnosed(error, raw);
  }

  /** An unknown issuer gets the presented certificate's issuer and subject named (TLS inspection). */
  async #diagnosed(error: PlatformError, raw: unknown): Promise<PlatformError> {
    if (error.kind !== "tls" || !isUntrustedIssuer(errorMessage(raw, true))) return error;
    // The certificate is read again over a plain CONNECT tunnel; TLS to the proxy is not redone.
    // Nor over a SOCKS proxy (tls_diagnosis speaks CONNECT only).
    const proxy = this.proxy;
    if (proxy?.protocol === "https:" || (proxy && isSocksProxy(proxy))) return error;
    const { describeUntrustedCertificate } = await import("../trust/tls_diagnosis.ts");
    const port = Number(this.#baseUrl.port || 443);
    const text = await describeUntrustedCertificate(
      this.#baseUrl.hostname.replace(/^\[(.*)\]$/, "$1"),
      port,
      this.#timeoutMs,
      proxy
        ? {
          host: proxy.hostname.replace(/^\[(.*)\]$/, "$1"),
          port: Number(proxy.port || (proxy.protocol === "https:" ? 443 : 80)),
          authorization: this.#proxyAuthorization,
        }
        : undefined,
      this.#pins.cas,
      this.#pins.label,
    );
    if (text === undefined) return error;
    return platformError(`TLS handshake with ${q(this.#target)} failed: ${text}`, "tls", {}, raw);
  }

  #transportError(
    error: unknown,
    cause: "timeout" | "aborted" | undefined,
    phase: "connect" | "body",
  ): PlatformError {
    const { kind, message } = classifyTransportError({
      raw: errorMessage(error, true),
      cause,
      phase,
      baseUrl: this.#baseUrl,
      proxy: this.proxy,
      timeoutMs: this.#timeoutMs,
      pinned: this.#pins.cas !== undefined,
      mtls: this.#auth.kind === "mtls",
      clockHint: clockHint(this.#clock?.latest),
    });
    return platformError(message, kind, {}, error);
  }
}
