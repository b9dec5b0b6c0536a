/**
 * The only code that talks to the platform: one pooled HTTP client with the pinned CA set, the
 * client certificate in mTLS mode, proxies, and hardening against a broken or hostile server
 * (timeouts, size cap, no redirects, typed errors that never carry a secret).
 */
import type * as z from "../zod.ts";
import { parseRetryAfter } from "./backoff.ts";
import {
  AGENT_ID_PATTERN,
  type EnrollRequest,
  type EnrollResponse,
  EnrollResponseSchema,
  type HealthResponse,
  HealthResponseSchema,
  type HeartbeatBody,
  type HeartbeatResponse,
  HeartbeatResponseSchema,
  ProblemSchema,
  type RenewRequest,
  type RenewResponse,
  RenewResponseSchema,
} from "./contract.ts";
import { clockHint, type ClockOffset } from "./clock_offset.ts";
import {
  AgentError,
  errorMessage,
  PlatformError,
  type PlatformErrorDetails,
  UsageError,
} from "../errors.ts";
import { type Logger, redact, redactValue, registerSecret, silentLogger } from "../log.ts";
import {
  bareProxy,
  type ProxyDecision,
  type ProxyHop,
  ProxyRoute,
  withDecidedProxyEnv,
} from "../proxy/proxy_select.ts";
import { createRootedHttpClient, type RootStore } from "../trust/trust_store.ts";
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

/** Whole-request timeout when none is given. */
export const DEFAULT_TIMEOUT_MS = 15_000;
/** Response body cap when none is given: platform answers are a few hundred bytes. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

const MAX_DETAIL_CHARS = 200;
/** First read buffer when the platform declares no `content-length`; grows by doubling. */
const INITIAL_READ_BYTES = 4096;

interface RequestSpec {
  method: "GET" | "POST" | "DELETE";
  path: string;
  body?: unknown;
  signal?: AbortSignal;
  authenticated: boolean;
}

interface Answer {
  status: number;
  headers: Headers;
  json: unknown;
}

/** A client for platform contract v1; dispose it (or call close) to release its connections. */
/**
 * `api/v1/agents/<id><suffix>`; an id that could act as a path segment (`.`, `..`) never gets
 * this far (the identity is validated on load), and is refused here too rather than sent.
 */
function agentPath(agentId: string, suffix: string): string {
  if (!AGENT_ID_PATTERN.test(agentId)) {
    throw new UsageError(
      `Refusing agent id ${
        JSON.stringify(agentId)
      }: it must start with a letter or digit; re-enroll with "oneconnect-agent enroll --force"`,
    );
  }
  return `api/v1/agents/${encodeURIComponent(agentId)}${suffix}`;
}

export class PlatformClient implements Disposable {
  /** How the platform is reached: the proxy decision and where it came from. */
  readonly route: ProxyRoute;
  readonly #baseUrl: URL;
  readonly #auth: PlatformAuth;
  readonly #pinned: boolean;
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
    const clientOptions: Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem> = {};
    const pins = options.caCertificates;
    this.#pinned = pins !== undefined;
    this.#rootStore = options.rootStore ?? (this.#pinned ? "none" : "mozilla");
    // poolIdleTimeout is left at its default on purpose: setting it spins the event loop (#29444).
    if (pins !== undefined) {
      // Deno skips what it cannot parse; an unusable pin set would fail every handshake later.
      const bad = pins.findIndex((pem) => !pem.includes("-----BEGIN CERTIFICATE-----"));
      if (pins.length === 0 || bad >= 0) {
        throw new PlatformError(
          pins.length === 0
            ? `cannot set up TLS for ${q(this.#target)}: the pinned CA set is empty`
            : `cannot set up TLS for ${q(this.#target)}: pinned CA entry ${
              bad + 1
            } is not a PEM certificate`,
          { kind: "tls" },
        );
      }
      clientOptions.caCerts = pins;
    }
    if (this.#auth.kind === "mtls") {
      clientOptions.cert = this.#auth.certificatePem;
      clientOptions.key = this.#auth.privateKeyPem;
    }
    this.#clientOptions = clientOptions;
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
      const username = decodeURIComponent(next.url.username);
      const password = decodeURIComponent(next.url.password);
      registerSecret(password);
      if (username || password) {
        this.#proxyAuthorization = `Basic ${btoa(`${username}:${password}`)}`;
        registerSecret(this.#proxyAuthorization);
      }
      const bare = new URL(bareProxy(next.url));
      options.proxy = {
        transport: bare.protocol === "https:" ? "https" : "http",
        url: bare.origin,
        ...(username || password ? { basicAuth: { username, password } } : {}),
      };
      this.#proxy = bare;
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
      throw new PlatformError(
        `cannot set up TLS for ${JSON.stringify(this.#target)}: ${
          redact(oneLine(errorMessage(e, true)))
        }`,
        { kind: "tls" },
        { cause: e },
      );
    }
    this.#logger.debug(this.#proxy ? "Using proxy" : "Connecting directly", {
      proxy: this.#proxy?.origin,
      source: decision.source,
    });
  }

  /** `POST api/v1/agents/enroll` (201). */
  async enroll(body: EnrollRequest, signal?: AbortSignal): Promise<EnrollResponse> {
    const answer = await this.#request({
      method: "POST",
      path: "api/v1/agents/enroll",
      body,
      signal,
      authenticated: false,
    });
    return this.#validate(answer, EnrollResponseSchema);
  }

  /** `POST api/v1/agents/{id}/heartbeats` (200). */
  async heartbeat(
    agentId: string,
    body: HeartbeatBody,
    signal?: AbortSignal,
  ): Promise<HeartbeatResponse> {
    const answer = await this.#request({
      method: "POST",
      path: agentPath(agentId, "/heartbeats"),
      body,
      signal,
      authenticated: true,
    });
    return this.#validate(answer, HeartbeatResponseSchema);
  }

  /** `POST api/v1/agents/{id}/certificate` (200): renewal with a new key pair. */
  async renewCertificate(
    agentId: string,
    body: RenewRequest,
    signal?: AbortSignal,
  ): Promise<RenewResponse> {
    const answer = await this.#request({
      method: "POST",
      path: agentPath(agentId, "/certificate"),
      body,
      signal,
      authenticated: true,
    });
    return this.#validate(answer, RenewResponseSchema);
  }

  /** `DELETE api/v1/agents/{id}` (204): the platform forgets the agent. */
  async unenroll(agentId: string, signal?: AbortSignal): Promise<void> {
    await this.#request({
      method: "DELETE",
      path: agentPath(agentId, ""),
      signal,
      authenticated: true,
    });
  }

  /** `GET api/v1/health` (200), with the response `Date` header for the clock-skew check. */
  async health(signal?: AbortSignal): Promise<{ body: HealthResponse; date: string | null }> {
    const answer = await this.#request({
      method: "GET",
      path: "api/v1/health",
      signal,
      authenticated: false,
    });
    return { body: this.#validate(answer, HealthResponseSchema), date: answer.headers.get("date") };
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

  async #request(spec: RequestSpec): Promise<Answer> {
    if (this.#closed) throw this.#error(`client for ${q(this.#target)} is closed`, "aborted");
    if (spec.signal?.aborted) {
      throw this.#error(`request to ${q(this.#target)} was aborted`, "aborted");
    }
    const url = new URL(spec.path, this.#baseUrl);
    const headers = new Headers({ "User-Agent": USER_AGENT, "Accept": "application/json" });
    if (spec.body !== undefined) headers.set("Content-Type", "application/json");
    if (spec.authenticated && this.#auth.kind === "bearer") {
      headers.set("Authorization", `Bearer ${this.#auth.token}`);
    }

    // One controller per request, fed by a cleared timer and by the caller's signal through a
    // listener removed in `finally`: AbortSignal.any over a long-lived signal leaks (#24842), and
    // an AbortSignal.timeout cannot be cancelled, so each one stays alive for the whole timeout.
    const controller = new AbortController();
    let cause: "timeout" | "aborted" | undefined;
    const timer = setTimeout(() => {
      cause ??= "timeout";
      controller.abort();
    }, this.#timeoutMs);
    const onCallerAbort = () => {
      cause ??= "aborted";
      controller.abort();
    };
    spec.signal?.addEventListener("abort", onCallerAbort, { once: true });
    const started = performance.now();
    try {
      let response: Response;
      for (;;) {
        if (this.#client === undefined) this.#follow(await this.route.decide());
        const sentWallMs = this.#now();
        try {
          response = await fetch(url, {
            method: spec.method,
            headers,
            body: spec.body === undefined ? undefined : JSON.stringify(spec.body),
            client: this.#client,
            redirect: "manual",
            signal: controller.signal,
          });
          this.#clock?.observe(response.headers.get("date"), sentWallMs, this.#now());
          break;
        } catch (e) {
          const error = this.#transportError(e, cause, "connect");
          if (cause !== undefined || !isConnectFailure(error)) {
            throw await this.#diagnosed(error, e);
          }
          if (this.#hop + 1 < this.#hops.length) {
            // `PROXY a; PROXY b; DIRECT`: nothing reached the platform, so the next hop may retry.
            this.#logger.warn(`${error.message}; trying the next proxy of the decision`);
            this.#follow({ hops: this.#hops, source: "failover" }, this.#hop + 1);
            continue;
          }
          // Every hop failed: the next request makes the decision again (PAC, OS setting).
          this.route.invalidate();
          if (this.route.known === undefined) {
            this.#client?.close();
            this.#client = undefined;
          } else if (this.#hop !== 0) {
            this.#follow(this.route.known);
          }
          throw await this.#diagnosed(error, e);
        }
      }
      this.#logger.debug("Platform answered", {
        method: spec.method,
        path: url.pathname,
        status: response.status,
        ms: Math.round(performance.now() - started),
      });
      if (response.status >= 300 && response.status < 400) {
        await response.body?.cancel().catch(() => {});
        throw this.#redirectError(response);
      }
      const ok = response.status >= 200 && response.status < 300;
      if (ok && spec.method === "DELETE") {
        await response.body?.cancel().catch(() => {});
        return { status: response.status, headers: response.headers, json: undefined };
      }
      let bytes: Uint8Array;
      try {
        bytes = await this.#readCapped(response);
      } catch (e) {
        if (e instanceof PlatformError) throw e;
        throw this.#transportError(e, cause, "body");
      }
      if (!ok) throw this.#httpError(response, bytes);
      return {
        status: response.status,
        headers: response.headers,
        json: this.#parseJson(response, bytes),
      };
    } finally {
      clearTimeout(timer);
      spec.signal?.removeEventListener("abort", onCallerAbort);
    }
  }

  async #readCapped(response: Response): Promise<Uint8Array> {
    const max = this.#maxResponseBytes;
    const declared = Number(response.headers.get("content-length") ?? NaN);
    if (Number.isFinite(declared) && declared > max) {
      await response.body?.cancel().catch(() => {});
      throw this.#tooLarge(response);
    }
    if (!response.body) return new Uint8Array(0);
    // Read into our own buffer, sized to the declared length: the default reader allocates a
    // 64 KiB buffer per read, and at one heartbeat a second that garbage piled up as several MB
    // of external memory between two GCs and grew the malloc heap for good (deno task bench).
    const reader = response.body.getReader({ mode: "byob" });
    let buffer = new Uint8Array(
      Number.isFinite(declared) ? Math.min(declared, max) + 1 : INITIAL_READ_BYTES,
    );
    let total = 0;
    try {
      while (true) {
        if (total === buffer.byteLength) {
          if (total > max) {
            await reader.cancel().catch(() => {});
            throw this.#tooLarge(response);
          }
          const grown = new Uint8Array(Math.min(buffer.byteLength * 2, max + 1));
          grown.set(buffer);
          buffer = grown;
        }
        const { done, value } = await reader.read(
          new Uint8Array(buffer.buffer, total, buffer.byteLength - total),
        );
        if (value) {
          // The read transfers the buffer: keep using the one it came back in.
          buffer = new Uint8Array(value.buffer);
          total += value.byteLength;
        }
        if (done) break;
        if (total > max) {
          await reader.cancel().catch(() => {});
          throw this.#tooLarge(response);
        }
      }
    } finally {
      reader.releaseLock();
    }
    return buffer.subarray(0, total);
  }

  #parseJson(response: Response, bytes: Uint8Array): unknown {
    const type = mediaType(response);
    if (type !== undefined && !isJsonType(type)) {
      throw this.#error(
        `platform answered ${response.status} with ${q(type)}, not JSON`,
        "invalid_response",
        { httpStatus: response.status },
      );
    }
    const parsed = tryParseJson(bytes);
    if (!parsed.ok) {
      throw this.#error(
        `platform answered ${response.status} with invalid JSON`,
        "invalid_response",
        { httpStatus: response.status },
      );
    }
    return parsed.value;
  }

  #validate<T extends z.ZodMiniType>(answer: Answer, schema: T): z.infer<T> {
    const result = schema.safeParse(answer.json);
    if (result.success) return result.data;
    // Name the field and the expectation only: the received value may be a secret.
    const issue = result.error.issues[0];
    const field = issue && issue.path.length > 0
      ? `field ${q(issue.path.map(String).join("."))}`
      : "body";
    throw this.#error(
      `platform answered ${answer.status} with an unexpected body: ${field}: ${
        issue?.message ?? "invalid"
      }`,
      "invalid_response",
      { httpStatus: answer.status },
    );
  }

  #httpError(response: Response, bytes: Uint8Array): PlatformError {
    const status = response.status;
    const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"), this.#now());
    const retryNote = retryAfterSeconds === undefined
      ? ""
      : ` (retry after ${Math.round(retryAfterSeconds)} s)`;
    const type = mediaType(response);
    const parsed = type === undefined || isJsonType(type) ? tryParseJson(bytes) : undefined;
    if (!parsed?.ok) {
      const what = type === undefined ? "no content type" : q(type);
      const title = type?.includes("html") ? htmlTitle(bytes) : undefined;
      return this.#error(
        `platform answered ${status} with ${what}, not JSON${
          title ? ` (page title ${q(title)})` : ""
        }${retryNote}${title === undefined ? "" : this.#certificateHint(title)}`,
        "http",
        { httpStatus: status, retryAfterSeconds, contentType: type },
      );
    }
    const problem = ProblemSchema.safeParse(parsed.value);
    if (!problem.success) {
      return this.#error(`platform answered ${status}${retryNote}`, "http", {
        httpStatus: status,
        retryAfterSeconds,
        contentType: type,
      });
    }
    const { type: _type, title, status: _status, detail, code, ...extensions } = problem.data;
    // Callers branch on the code, so it must be a plain identifier, and never a secret.
    const safeCode = code !== undefined && /^[A-Za-z0-9_.:-]{1,64}$/.test(code) &&
        redact(code) === code
      ? code
      : undefined;
    const safeDetail = detail !== undefined ? clean(detail) : undefined;
    const text = safeDetail ?? (title !== undefined ? clean(title) : undefined);
    return this.#error(
      `platform answered ${status}${safeCode ? ` ${safeCode}` : ""}${
        text ? `: ${text}` : ""
      }${retryNote}${safeCode === "client_certificate_required" ? this.#certificateHint() : ""}`,
      "http",
      {
        httpStatus: status,
        contentType: type,
        code: safeCode,
        detail: safeDetail,
        retryAfterSeconds,
        problem: redactValue(extensions) as Record<string, unknown>,
      },
    );
  }

  /**
   * What to do about an answer demanding a client certificate: the platform's
   * `client_certificate_required`, or nginx's default page for a missing (496) or unverifiable
   * (495) one, whose titles are "400 No required SSL certificate was sent" and "400 The SSL
   * certificate error". Empty for any other page.
   */
  #certificateHint(pageTitle?: string): string {
    if (pageTitle !== undefined && /SSL certificate error/i.test(pageTitle)) {
      return "; the edge rejected the client certificate";
    }
    if (pageTitle !== undefined && !/No required SSL certificate/i.test(pageTitle)) return "";
    return this.#auth.kind === "mtls"
      ? "; the edge did not receive the agent certificate"
      : "; the edge requires a client certificate: use --auth mtls (or ONECONNECT_AUTH=mtls)";
  }

  #redirectError(response: Response): PlatformError {
    const raw = response.headers.get("location");
    let where = "no Location";
    if (raw !== null) {
      try {
        const location = new URL(raw, this.#baseUrl);
        location.username = "";
        location.password = "";
        location.search = "";
        location.hash = "";
        where = q(location.href);
      } catch {
        where = "an unparsable Location";
      }
    }
    return this.#error(
      `platform answered ${response.status} redirecting to ${where}; redirects are not followed, check the platform URL`,
      "redirect",
      { httpStatus: response.status },
    );
  }

  #tooLarge(response: Response): PlatformError {
    // Status and Retry-After still count: a 401 or 503 with a huge page is still a 401 or 503.
    return this.#error(
      `platform answered ${response.status} with a body larger than ${this.#maxResponseBytes} bytes; refused`,
      "response_too_large",
      {
        httpStatus: response.status,
        retryAfterSeconds: parseRetryAfter(response.headers.get("retry-after"), this.#now()),
      },
    );
  }

  /** An unknown issuer gets the presented certificate's issuer and subject named (TLS inspection). */
  async #diagnosed(error: PlatformError, raw: unknown): Promise<PlatformError> {
    if (error.kind !== "tls" || !/UnknownIssuer|BadSignature/.test(errorMessage(raw, true))) {
      return error;
    }
    // The certificate is read again over a plain CONNECT tunnel; TLS to the proxy is not redone.
    if (this.proxy?.protocol === "https:") return error;
    const { describeUntrustedCertificate } = await import("../trust/tls_diagnosis.ts");
    const port = Number(this.#baseUrl.port || 443);
    const proxy = this.proxy;
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
    );
    if (text === undefined) return error;
    return this.#error(`TLS handshake with ${q(this.#target)} failed: ${text}`, "tls", {}, raw);
  }

  #transportError(
    error: unknown,
    cause: "timeout" | "aborted" | undefined,
    phase: "connect" | "body",
  ): PlatformError {
    const target = q(this.#target);
    if (cause === "timeout") {
      return this.#error(
        `no complete answer from ${target} within ${formatSeconds(this.#timeoutMs)}`,
        "timeout",
        {},
        error,
      );
    }
    if (cause === "aborted") {
      return this.#error(`request to ${target} was aborted`, "aborted", {}, error);
    }
    const raw = errorMessage(error, true);
    const via = this.proxy ? ` via proxy ${q(hostPort(this.proxy))}` : "";
    const tls = describeTlsFailure(
      raw,
      this.#pinned,
      this.#auth.kind === "mtls",
      clockHint(this.#clock?.latest),
    );
    if (tls) {
      return this.#error(`TLS handshake with ${target} failed: ${tls}`, "tls", {}, error);
    }
    if (
      /dns error|failed to lookup address|name or service not known|nodename nor servname|no such host is known|name resolution/i
        .test(raw)
    ) {
      const what = this.proxy
        ? `proxy host ${q(this.proxy.hostname)}`
        : `host ${q(this.#baseUrl.hostname)}`;
      return this.#error(`cannot resolve ${what} (DNS lookup failed)`, "dns", {}, error);
    }
    if (/connection refused|os error (111|61|10061)\b/i.test(raw)) {
      // Through a proxy only the proxy is dialled; its refusal of the target comes as a status.
      const dialled = this.proxy ? `proxy ${q(hostPort(this.proxy))}` : target;
      return this.#error(`cannot connect to ${dialled}: connection refused`, "network", {}, error);
    }
    if (/connection reset|os error (104|54|10054)\b/i.test(raw)) {
      return this.#error(`connection to ${target}${via} was reset`, "network", {}, error);
    }
    if (/timed out|os error (110|60|10060)\b/i.test(raw)) {
      return this.#error(`connecting to ${target}${via} timed out`, "timeout", {}, error);
    }
    if (/unreachable|no route to host|os error (101|113|51|65)\b/i.test(raw)) {
      return this.#error(`cannot reach ${target}${via}: network unreachable`, "network", {}, error);
    }
    if (this.proxy && /proxy|tunnel/i.test(raw)) {
      const why = /unsuccessful tunnel/i.test(raw)
        ? "it answered CONNECT with an error"
        : tail(raw);
      return this.#error(
        `proxy ${q(hostPort(this.proxy))} refused the tunnel to ${target}: ${why}`,
        "network",
        {},
        error,
      );
    }
    if (
      phase === "body" ||
      /error reading a body|connection closed before message completed|unexpected eof|incomplete/i
        .test(raw)
    ) {
      return this.#error(
        `connection to ${target}${via} closed before the answer was complete`,
        "network",
        {},
        error,
      );
    }
    return this.#error(`request to ${target}${via} failed: ${tail(raw)}`, "network", {}, error);
  }

  #error(
    message: string,
    kind: PlatformErrorDetails["kind"],
    details: Omit<PlatformErrorDetails, "kind"> = {},
    cause?: unknown,
  ): PlatformError {
    return new PlatformError(
      redact(oneLine(message)),
      { kind, ...details },
      cause === undefined ? undefined : { cause },
    );
  }
}

/** Whether `error` means that nothing reached the platform: the next proxy hop may be tried. */
function isConnectFailure(error: PlatformError): boolean {
  if (error.kind === "dns") return true;
  return error.kind === "network" &&
    /^(cannot connect to|cannot reach) /.test(error.message);
}

/**
 * Turns a rustls error into "which check failed", e.g. `certificate is not signed by a pinned CA
 * (UnknownIssuer)`; undefined when `raw` is not a TLS failure.
 */
function describeTlsFailure(
  raw: string,
  pinned: boolean,
  mtls: boolean,
  clock = "",
): string | undefined {
  const peer = /invalid peer certificate: (.*)$/i.exec(raw)?.[1];
  if (peer !== undefined) {
    // BadSignature: an issuer with a pinned CA's name but another key (a look-alike CA).
    const issuer = /UnknownIssuer|BadSignature/i.exec(peer)?.[0];
    if (issuer !== undefined) {
      return `certificate is not signed by ${pinned ? "a pinned" : "a trusted"} CA (${issuer})`;
    }
    const name = /not valid for name "([^"]*)"(?:; certificate is only valid for (.*))?/i.exec(
      peer,
    );
    if (name || /NotValidForName/i.test(peer)) {
      const valid = name?.[2]
        ? `; it is valid for ${
          name[2].replace(/(?:DnsName|IpAddress)\(([^)]*)\)/g, "$1").replace(/"/g, "")
        }`
        : "";
      return `certificate is not valid for this host name (NotValidForName${valid})`;
    }
    if (/expired/i.test(peer)) {
      const after = /not valid after (\d+)/.exec(peer)?.[1];
      return `certificate expired${after ? ` at ${unixToIso(after)}` : ""} (Expired)${clock}`;
    }
    if (/not valid yet/i.test(peer)) {
      const before = /not valid before (\d+)/.exec(peer)?.[1];
      return `certificate is not valid yet${
        before ? ` (valid from ${unixToIso(before)})` : ""
      }; check this host's clock (NotValidYet)${clock}`;
    }
    if (/extended key usage|InvalidPurpose/i.test(peer)) {
      return "certificate is not meant for a TLS server (InvalidPurpose)";
    }
    if (/revoked/i.test(peer)) return "certificate is revoked (Revoked)";
    return `certificate rejected (${tail(peer)})`;
  }
  const alert = /received fatal alert: (\w+)/i.exec(raw)?.[1];
  if (alert !== undefined) {
    if (/CertificateRequired/i.test(alert)) {
      return mtls
        ? "the server did not accept the client certificate (CertificateRequired)"
        : "the server requires a client certificate; use --auth mtls (CertificateRequired)";
    }
    if (
      mtls &&
      /UnknownCA|BadCertificate|CertificateExpired|CertificateRevoked|CertificateUnknown|AccessDenied|UnsupportedCertificate|HandshakeFailure/i
        .test(alert)
    ) {
      return `the server rejected the client certificate (${alert})`;
    }
    if (!mtls && /HandshakeFailure/i.test(alert)) {
      return `the server ended the handshake; it may require a client certificate: use --auth mtls (${alert})`;
    }
    return `the server sent alert ${alert}`;
  }
  if (/received corrupt message|InvalidContentType/i.test(raw)) {
    return `the server does not speak TLS on this port (${tail(raw)})`;
  }
  if (/\b(tls|ssl|handshake)\b|certificate/i.test(raw)) return tail(raw);
  return undefined;
}

/** The last, most specific part of a Deno/hyper error chain, without URLs. */
function tail(raw: string): string {
  const parts = raw.split(/\): |: /);
  const last = parts.at(-1)?.trim() || raw;
  return clean(last.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, "<url>"), 160);
}

function hostPort(url: URL): string {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return `${url.hostname}:${port}`;
}

function mediaType(response: Response): string | undefined {
  const raw = response.headers.get("content-type");
  if (raw === null) return undefined;
  const type = raw.split(";")[0]?.trim().toLowerCase() ?? "";
  return /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type) ? type : "an invalid content type";
}

function isJsonType(type: string): boolean {
  return type === "application/json" || type.endsWith("+json");
}

function tryParseJson(bytes: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) };
  } catch {
    return { ok: false };
  }
}

function htmlTitle(bytes: Uint8Array): string | undefined {
  const head = new TextDecoder().decode(bytes.subarray(0, 4096));
  const title = /<title[^>]*>([^<]{1,200})<\/title>/i.exec(head)?.[1];
  return title === undefined ? undefined : clean(title, 80);
}

/** Redacted, printable, single-line, truncated. */
function clean(text: string, max = MAX_DETAIL_CHARS): string {
  // deno-lint-ignore no-control-regex
  const flat = redact(text).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ")
    .replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ");
}

function q(text: string): string {
  return JSON.stringify(text);
}

function unixToIso(seconds: string): string {
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.000Z$/, "Z");
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
