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
  const checks: PreflightCheck[] = [];
  const host = bareHost(target.url);
  const port = defaultPort(target.url);
  const via = target.proxy;
  const dialHost = via ? bareHost(via) : host;
  const dialPort = via ? defaultPort(via) : port;
  const dialWhat = via ? `proxy ${hostPort(dialHost, dialPort)}` : hostPort(host, port);
  const bounded = <T>(run: (signal: AbortSignal) => Promise<T>) =>
    run(AbortSignal.timeout(target.timeoutMs));
  const skipRest = (from: PreflightCheckName[], why: string) => {
    for (const name of from) checks.push({ name, status: "skip", detail: why });
  };
  const tcpName: PreflightCheckName = via ? "proxy" : "tcp";
  if (target.route !== undefined) {
    const { text, problem } = target.route;
    checks.push({ name: "route", status: problem ? "warn" : "ok", detail: text });
  }

  if (parseIp(dialHost) !== undefined) {
    checks.push({ name: "dns", status: "skip", detail: `${dialHost} is an IP address` });
  } else {
    try {
      const addresses = await bounded((s) => net.resolve(dialHost, s));
      if (addresses.length === 0) throw new Error("no address");
      checks.push({
        name: "dns",
        status: "ok",
        detail: `${via ? "proxy host " : ""}${dialHost} resolves to ${
          addresses.slice(0, 3).join(", ")
        }`,
      });
    } catch (error) {
      checks.push({
        name: "dns",
        status: "fail",
        detail: `cannot resolve ${via ? "proxy host " : ""}${dialHost}: ${errorMessage(error)}`,
      });
      skipRest([tcpName, "tls", "health", "clock"], "skipped: name resolution failed");
      return checks;
    }
  }

  try {
    const started = net.monotonicMs();
    await bounded((s) => net.connectTcp(dialHost, dialPort, s));
    checks.push({
      name: tcpName,
      status: "ok",
      detail: `connected to ${dialWhat} in ${Math.round(net.monotonicMs() - started)} ms`,
    });
  } catch (error) {
    checks.push({
      name: tcpName,
      status: "fail",
      detail: `cannot connect to ${dialWhat}: ${errorMessage(error)}`,
    });
    skipRest(["tls", "health", "clock"], "skipped: no TCP connection");
    return checks;
  }

  const pin = target.trustLabel ??
    (target.caCerts
      ? `the CA file (${target.caCerts.length} certificate${
        target.caCerts.length === 1 ? "" : "s"
      })`
      : "the operating system's trust store");
  if (target.url.protocol !== "https:") {
    checks.push({ name: "tls", status: "skip", detail: "plain http (loopback only)" });
  } else if (via) {
    checks.push({
      name: "tls",
      status: "skip",
      detail: `checked against ${pin} through the proxy by the health check`,
    });
  } else {
    try {
      await bounded((s) => net.handshakeTls(host, port, target.caCerts, s));
      checks.push({
        name: "tls",
        status: "ok",
        detail: `certificate of ${hostPort(host, port)} verified against ${pin}`,
      });
    } catch (error) {
      checks.push({
        name: "tls",
        status: "fail",
        detail: `certificate of ${hostPort(host, port)} not accepted with ${pin}: ${
          errorMessage(error)
        }`,
      });
      skipRest(["health"], "skipped: TLS failed");
      if (/\((NotValidYet|Expired)\)/.test(errorMessage(error))) {
        // No answer to measure the platform's clock by, but the certificate's dates speak.
        checks.push({
          name: "clock",
          status: "fail",
          detail: `this host's clock reads ${
            isoTime(net.wallMs())
          }, outside the platform certificate's validity: ${CLOCK_SKEW_HINT}`,
        });
      } else skipRest(["clock"], "skipped: TLS failed");
      return checks;
    }
  }

  let answer: { body: HealthResponse; date: string | null };
  let localMs: number;
  try {
    const sentWall = net.wallMs();
    const sentMono = net.monotonicMs();
    answer = await bounded((s) => net.health(s));
    const roundTripMs = net.monotonicMs() - sentMono;
    // The platform read its clock somewhere in the round trip: compare against the middle.
    localMs = sentWall + roundTripMs / 2;
    checks.push({
      name: "health",
      status: "ok",
      detail: `GET api/v1/health answered status "${answer.body.status}" in ${
        Math.round(roundTripMs)
      } ms`,
    });
  } catch (error) {
    checks.push({ name: "health", status: "fail", detail: errorMessage(error) });
    skipRest(["clock"], "skipped: no answer from the platform");
    return checks;
  }

  let platformMs = Date.parse(answer.body.time);
  let source = "its time";
  if (Number.isNaN(platformMs) && answer.date !== null) {
    platformMs = Date.parse(answer.date);
    source = "its Date header";
  }
  if (Number.isNaN(platformMs)) {
    checks.push({ name: "clock", status: "skip", detail: "the platform sent no usable time" });
    return checks;
  }
  const skew = Math.round((platformMs - localMs) / 1000);
  const abs = Math.abs(skew);
  const text = abs === 0
    ? `platform clock (${source}) agrees with this host`
    : `platform clock (${source}) is ${abs} s ${skew > 0 ? "ahead of" : "behind"} this host`;
  // A warning, as enroll gives one (ClockOffset): enroll allows for the offset it measured, so a
  // skew the TLS check survived does not make enroll fail.
  if (abs > CLOCK_WARN_SECONDS) {
    checks.push({
      name: "clock",
      status: "warn",
      detail: `${text}, more than ${CLOCK_WARN_SECONDS} s: ${CLOCK_SKEW_HINT}`,
    });
  } else {
    checks.push({ name: "clock", status: "ok", detail: text });
  }
  return checks;
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
  const timeoutMs = Math.min(options.timeoutSeconds, ctx.config.timeoutSeconds) * 1000;
  // Made first: the first TLS client of the process decides whether only the pin is trusted,
  // and the TLS check must trust exactly what enrollment will.
  using client = new PlatformClient({
    ...commandClientOptions(ctx, { timeoutMs }),
    baseUrl: url,
    caCertificates: caCerts,
    caLabel: caLabelOf(trust),
    rootStore: rootStoreOf(trust),
  });
  const { describeDecision } = await import("../proxy/proxy_select.ts");
  const decision = await client.decideRoute();
  const health = (signal: AbortSignal) => client.health(signal);
  return await runPreflight(
    {
      url,
      caCerts,
      trustLabel,
      proxy: client.proxy,
      timeoutMs,
      route: {
        text: describeDecision(decision),
        problem: decision.problem !== undefined,
      },
    },
    network ? network(health) : denoPreflightNetwork(health, caLabelOf(trust)),
  );
}
