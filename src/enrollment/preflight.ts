/**
 * `oneconnect-agent enroll --check`: the checks an MDM runs before enrolling thousands of hosts.
 * It never reads, sends or spends the enrollment token.
 */
import { parseIp } from "../proxy/ip_address.ts";
import type { CommandContext } from "../config/context.ts";
import type { HealthResponse } from "../wire/contract.ts";
import { denoPreflightNetwork, hostPort, type PreflightNetwork } from "./preflight_network.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { denoFileSystem } from "../file_system.ts";
import type { Trust } from "../trust/trust_source.ts";
import { isoTime } from "../iso_time.ts";
import { CLOCK_SKEW_HINT, CLOCK_WARN_SECONDS } from "../wire/clock_offset.ts";

/** Names of the checks, in the order they run. */
export type PreflightCheckName =
  | "route"
  | "dns"
  | "tcp"
  | "proxy"
  | "tls"
  | "health"
  | "clock";

/** The outcome of one preflight check. */
export interface PreflightCheck {
  name: PreflightCheckName;
  status: "ok" | "warn" | "fail" | "skip";
  detail: string;
}

/** What to check. */
export interface PreflightTarget {
  url: URL;
  /** Pinned CA PEMs (--ca-file, or the CAs matching --ca-pin); undefined means a root store. */
  caCerts?: string[];
  /** How to name what is trusted, e.g. "the operating system's trust store". */
  trustLabel?: string;
  /** The proxy requests go through, if any. */
  proxy?: URL;
  /** The proxy decision and where it came from, shown first (`route`); a problem warns. */
  route?: { text: string; problem: boolean };
  /** Bound of each check. */
  timeoutMs: number;
}

function defaultPort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

function bareHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, "$1");
}

/** The platform's answer to the health check and this host's clock when the platform read its. */
interface Measured {
  answer: { body: HealthResponse; date: string | null };
  localMs: number;
}

/**
 * One run of the checks: each method is one check, pushes its outcome, and on a failure skips the
 * checks that depend on it and returns false (or undefined).
 */
class PreflightRun {
  readonly checks: PreflightCheck[] = [];
  readonly #target: PreflightTarget;
  readonly #net: PreflightNetwork;
  readonly #host: string;
  readonly #port: number;
  /** The host and port that are dialled: the platform's, or the proxy's. */
  readonly #dial: { host: string; port: number; what: string; check: PreflightCheckName };

  constructor(target: PreflightTarget, net: PreflightNetwork) {
    this.#target = target;
    this.#net = net;
    this.#host = bareHost(target.url);
    this.#port = defaultPort(target.url);
    const via = target.proxy;
    const host = via ? bareHost(via) : this.#host;
    const port = via ? defaultPort(via) : this.#port;
    const what = via ? `proxy ${hostPort(host, port)}` : hostPort(host, port);
    this.#dial = { host, port, what, check: via ? "proxy" : "tcp" };
  }

  #push(name: PreflightCheckName, status: PreflightCheck["status"], detail: string): void {
    this.checks.push({ name, status, detail });
  }

  #skip(names: PreflightCheckName[], why: string): void {
    for (const name of names) this.#push(name, "skip", why);
  }

  #bounded<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return run(AbortSignal.timeout(this.#target.timeoutMs));
  }

  /** The proxy decision, shown first; a problem with it warns. */
  route(): void {
    if (this.#target.route === undefined) return;
    const { text, problem } = this.#target.route;
    this.#push("route", problem ? "warn" : "ok", text);
  }

  /** Name resolution of the dialled host (skipped for an IP address). */
  async dns(): Promise<boolean> {
    const { host } = this.#dial;
    if (parseIp(host) !== undefined) {
      this.#push("dns", "skip", `${host} is an IP address`);
      return true;
    }
    const which = this.#target.proxy ? "proxy host " : "";
    try {
      const addresses = await this.#bounded((s) => this.#net.resolve(host, s));
      if (addresses.length === 0) throw new Error("no address");
      this.#push("dns", "ok", `${which}${host} resolves to ${addresses.slice(0, 3).join(", ")}`);
      return true;
    } catch (error) {
      this.#push("dns", "fail", `cannot resolve ${which}${host}: ${errorMessage(error)}`);
      this.#skip([this.#dial.check, "tls", "health", "clock"], "skipped: name resolution failed");
      return false;
    }
  }

  /** A TCP connection to the dialled host (`tcp`, or `proxy` through one). */
  async tcp(): Promise<boolean> {
    const { host, port, what, check } = this.#dial;
    const net = this.#net;
    try {
      const started = net.monotonicMs();
      await this.#bounded((s) => net.connectTcp(host, port, s));
      const ms = Math.round(net.monotonicMs() - started);
      this.#push(check, "ok", `connected to ${what} in ${ms} ms`);
      return true;
    } catch (error) {
      this.#push(check, "fail", `cannot connect to ${what}: ${errorMessage(error)}`);
      this.#skip(["tls", "health", "clock"], "skipped: no TCP connection");
      return false;
    }
  }

  /** How the trusted CAs are named in the TLS check's lines. */
  #trustName(): string {
    const { trustLabel, caCerts } = this.#target;
    if (trustLabel !== undefined) return trustLabel;
    if (!caCerts) return "the operating system's trust store";
    return `the CA file (${caCerts.length} certificate${caCerts.length === 1 ? "" : "s"})`;
  }

  /** The platform's certificate chain against the pin, on a direct connection only. */
  async tls(): Promise<boolean> {
    const pin = this.#trustName();
    if (this.#target.url.protocol !== "https:") {
      this.#push("tls", "skip", "plain http (loopback only)");
      return true;
    }
    if (this.#target.proxy) {
      this.#push("tls", "skip", `checked against ${pin} through the proxy by the health check`);
      return true;
    }
    const endpoint = hostPort(this.#host, this.#port);
    try {
      const caCerts = this.#target.caCerts;
      await this.#bounded((s) => this.#net.handshakeTls(this.#host, this.#port, caCerts, s));
      this.#push("tls", "ok", `certificate of ${endpoint} verified against ${pin}`);
      return true;
    } catch (error) {
      const why = errorMessage(error);
      this.#push("tls", "fail", `certificate of ${endpoint} not accepted with ${pin}: ${why}`);
      this.#skip(["health"], "skipped: TLS failed");
      if (/\((NotValidYet|Expired)\)/.test(why)) {
        // No answer to measure the platform's clock by, but the certificate's dates speak.
        const now = isoTime(this.#net.wallMs());
        this.#push(
          "clock",
          "fail",
          `this host's clock reads ${now}, outside the platform certificate's validity: ${CLOCK_SKEW_HINT}`,
        );
      } else this.#skip(["clock"], "skipped: TLS failed");
      return false;
    }
  }

  /** `GET api/v1/health`, the way enrollment sends it: the answer and when it was read. */
  async health(): Promise<Measured | undefined> {
    const net = this.#net;
    try {
      const sentWall = net.wallMs();
      const sentMono = net.monotonicMs();
      const answer = await this.#bounded((s) => net.health(s));
      const roundTripMs = net.monotonicMs() - sentMono;
      const ms = Math.round(roundTripMs);
      this.#push(
        "health",
        "ok",
        `GET api/v1/health answered status "${answer.body.status}" in ${ms} ms`,
      );
      // The platform read its clock somewhere in the round trip: compare against the middle.
      return { answer, localMs: sentWall + roundTripMs / 2 };
    } catch (error) {
      this.#push("health", "fail", errorMessage(error));
      this.#skip(["clock"], "skipped: no answer from the platform");
      return undefined;
    }
  }

  /** This host's clock against the platform's `time` (or its `Date` header). */
  clock({ answer, localMs }: Measured): void {
    let platformMs = Date.parse(answer.body.time);
    let source = "its time";
    if (Number.isNaN(platformMs) && answer.date !== null) {
      platformMs = Date.parse(answer.date);
      source = "its Date header";
    }
    if (Number.isNaN(platformMs)) {
      this.#push("clock", "skip", "the platform sent no usable time");
      return;
    }
    const skew = Math.round((platformMs - localMs) / 1000);
    const abs = Math.abs(skew);
    const text = abs === 0
      ? `platform clock (${source}) agrees with this host`
      : `platform clock (${source}) is ${abs} s ${skew > 0 ? "ahead of" : "behind"} this host`;
    // A warning, as enroll gives one (ClockOffset): enroll allows for the offset it measured, so a
    // skew the TLS check survived does not make enroll fail.
    if (abs > CLOCK_WARN_SECONDS) {
      this.#push("clock", "warn", `${text}, more than ${CLOCK_WARN_SECONDS} s: ${CLOCK_SKEW_HINT}`);
    } else {
      this.#push("clock", "ok", text);
    }
  }
}

/**
 * Runs the checks in order: name resolution and TCP to the host that is dialled (the platform, or
 * the proxy), the TLS chain against the pin (direct connections), `GET api/v1/health`, and the
 * clock skew against the platform's `time` (or its `Date` header). A check whose prerequisite
 * failed is skipped, so the first failure is the cause.
 */
export async function runPreflight(
  target: PreflightTarget,
  net: PreflightNetwork,
): Promise<PreflightCheck[]> {
  const run = new PreflightRun(target, net);
  run.route();
  if (await run.dns() && await run.tcp() && await run.tls()) {
    const measured = await run.health();
    if (measured !== undefined) run.clock(measured);
  }
  return run.checks;
}

/** Formats checks one per line: `ok    tls     certificate of ... verified ...`. */
export function formatChecks(checks: PreflightCheck[]): string {
  return checks.map((c) => `${c.status.padEnd(5)} ${c.name.padEnd(6)} ${c.detail}\n`).join("");
}

/** Options of {@linkcode preflight}. */
export interface PreflightOptions {
  /** `enroll --timeout`; each check is bounded by it and by the configured request timeout. */
  timeoutSeconds: number;
  /** `enroll --ca-pin` values. */
  caPins?: string[];
  /** An enrolled identity's platform and trust (`diagnostics`), instead of enrollment's. */
  identity?: { url: URL; cas: string[] | undefined; trust: Trust };
}

/**
 * The checks of `enroll --check` against the configured platform, with the trust and the proxy
 * enrollment would use; `network` replaces the real one in tests.
 */
export async function preflight(
  ctx: CommandContext,
  options: PreflightOptions,
  network?: (health: PreflightNetwork["health"]) => PreflightNetwork,
): Promise<PreflightCheck[]> {
  const url = options.identity?.url ?? ctx.config.platformUrl;
  if (!url) {
    throw new UsageError(
      "Cannot check: no platform URL; pass --url https://<platform> or set ONECONNECT_PLATFORM_URL",
    );
  }
  const timeoutMs = Math.min(options.timeoutSeconds, ctx.config.timeoutSeconds) * 1000;
  const trusted = await trustedClient(ctx, options, url, timeoutMs);
  using client = trusted.client;
  const { describeDecision } = await import("../proxy/proxy_select.ts");
  const decision = await client.decideRoute();
  const health = (signal: AbortSignal) => client.health(signal);
  return await runPreflight(
    {
      url,
      caCerts: trusted.caCerts,
      trustLabel: trusted.trustLabel,
      proxy: client.proxy,
      timeoutMs,
      route: {
        text: describeDecision(decision),
        problem: decision.problem !== undefined,
      },
    },
    network ? network(health) : denoPreflightNetwork(health, trusted.caLabel),
  );
}

/** What enrollment would trust for `url` (or the identity's trust), and a client trusting it. */
async function trustedClient(
  ctx: CommandContext,
  options: PreflightOptions,
  url: URL,
  timeoutMs: number,
) {
  const [
    { PlatformClient },
    { commandClientOptions },
    { enrollmentTrust, readPinnedCas },
    { caLabelOf, describeTrust, rootStoreOf },
  ] = await Promise.all([
    import("../platform/client.ts"),
    import("../platform/identity_client.ts"),
    import("./enrollment_trust.ts"),
    import("../trust/trust_source.ts"),
  ]);
  const { trust, cas: caCerts } = options.identity ?? await enrollmentTrust(
    ctx,
    options.caPins,
    { fs: denoFileSystem, pinnedCas: readPinnedCas },
    url,
  );
  const trustLabel = describeTrust(trust, caCerts?.length ?? 0);
  // Made first: the first TLS client of the process decides whether only the pin is trusted,
  // and the TLS check must trust exactly what enrollment will.
  const client = new PlatformClient({
    ...commandClientOptions(ctx, { timeoutMs }),
    baseUrl: url,
    caCertificates: caCerts,
    caLabel: caLabelOf(trust),
    rootStore: rootStoreOf(trust),
  });
  return { client, caCerts, trustLabel, caLabel: caLabelOf(trust) };
}
