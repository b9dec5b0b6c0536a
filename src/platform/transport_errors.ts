/**
 * Turns a failed platform request (the text of a Deno/hyper/rustls error and what the client knew)
 * into a kind and one line naming what failed and where; no I/O, so it is tested on plain strings.
 */
import type { PlatformErrorDetails } from "../errors.ts";
import { clean, q } from "./responses.ts";
import { isoTime } from "../iso_time.ts";

/** What the client knew when a request failed, and the error's text with its causes. */
export interface TransportFailure {
  /** `errorMessage(error, true)` of what `fetch` or the body read threw. */
  raw: string;
  /** Set when the client's own timer or the caller's signal ended the request. */
  cause?: "timeout" | "aborted";
  /** Whether the failure came while connecting or while reading the answer's body. */
  phase: "connect" | "body";
  /** The platform's base URL. */
  baseUrl: URL;
  /** The proxy the request went through (without credentials), if any. */
  proxy?: URL;
  /** The whole-request timeout, for the timeout message. */
  timeoutMs: number;
  /** Whether the CA set is pinned (rather than a trusted root store). */
  pinned: boolean;
  /** Whether the client presented a certificate (mTLS mode). */
  mtls: boolean;
  /** Appended to certificate-date failures (see `clockHint`); empty when the clock is not known off. */
  clockHint?: string;
}

/** A classified transport failure: the PlatformError kind and its one-line message. */
export interface TransportErrorText {
  kind: PlatformErrorDetails["kind"];
  message: string;
}

/** The kind and message of a failed request, e.g. `cannot resolve host "x" (DNS lookup failed)`. */
export function classifyTransportError(failure: TransportFailure): TransportErrorText {
  const { raw, proxy, baseUrl } = failure;
  const target = q(hostPort(baseUrl));
  if (failure.cause === "timeout") {
    return {
      kind: "timeout",
      message: `no complete answer from ${target} within ${formatSeconds(failure.timeoutMs)}`,
    };
  }
  if (failure.cause === "aborted") {
    return { kind: "aborted", message: `request to ${target} was aborted` };
  }
  const via = proxy ? ` via proxy ${q(hostPort(proxy))}` : "";
  if (
    baseUrl.protocol === "http:" &&
    /invalid HTTP version|connection reset|os error (104|54|10054)\b/i.test(raw)
  ) {
    // A TLS server answers plain HTTP with an alert (not HTTP) or by closing: retrying won't help.
    return {
      kind: "tls",
      message: `${target} did not answer plain HTTP (${
        tail(raw)
      }): the port probably expects TLS; use https://`,
    };
  }
  const tls = describeTlsFailure(raw, failure.pinned, failure.mtls, failure.clockHint);
  if (tls) return { kind: "tls", message: `TLS handshake with ${target} failed: ${tls}` };
  if (
    /dns error|failed to lookup address|name or service not known|nodename nor servname|no such host is known|name resolution/i
      .test(raw)
  ) {
    const what = proxy ? `proxy host ${q(proxy.hostname)}` : `host ${q(baseUrl.hostname)}`;
    return { kind: "dns", message: `cannot resolve ${what} (DNS lookup failed)` };
  }
  if (/connection refused|os error (111|61|10061)\b/i.test(raw)) {
    // Through a proxy only the proxy is dialled; its refusal of the target comes as a status.
    const dialled = proxy ? `proxy ${q(hostPort(proxy))}` : target;
    return { kind: "network", message: `cannot connect to ${dialled}: connection refused` };
  }
  if (/connection reset|os error (104|54|10054)\b/i.test(raw)) {
    return { kind: "network", message: `connection to ${target}${via} was reset` };
  }
  if (/timed out|os error (110|60|10060)\b/i.test(raw)) {
    return { kind: "timeout", message: `connecting to ${target}${via} timed out` };
  }
  if (/unreachable|no route to host|os error (101|113|51|65)\b/i.test(raw)) {
    return { kind: "network", message: `cannot reach ${target}${via}: network unreachable` };
  }
  if (proxy && /proxy|tunnel|socks|auth method|auth failure/i.test(raw)) {
    const why = /unsuccessful tunnel/i.test(raw)
      ? "it answered CONNECT with an error"
      : /auth method|auth failure/i.test(raw)
      ? "it refused the credentials; check the user:password in the proxy URL"
      : tail(raw);
    return {
      kind: "network",
      message: `proxy ${q(hostPort(proxy))} refused the tunnel to ${target}: ${why}`,
    };
  }
  if (
    failure.phase === "body" ||
    /error reading a body|connection closed before message completed|unexpected eof|incomplete/i
      .test(raw)
  ) {
    return {
      kind: "network",
      message: `connection to ${target}${via} closed before the answer was complete`,
    };
  }
  return { kind: "network", message: `request to ${target}${via} failed: ${tail(raw)}` };
}

/**
 * Why a bare TLS handshake with `baseUrl` failed (`enroll --check`), in the words
 * {@linkcode classifyTransportError} gives enroll's and run's requests for the same failure.
 */
export function describeHandshakeFailure(raw: string, baseUrl: URL, pinned: boolean): string {
  return describeTlsFailure(raw, pinned, false) ??
    classifyTransportError({ raw, phase: "connect", baseUrl, timeoutMs: 0, pinned, mtls: false })
      .message;
}

/** Whether a classified failure means that nothing reached the platform: the next hop may be tried. */
export function isConnectFailure(error: TransportErrorText): boolean {
  if (error.kind === "dns") return true;
  return error.kind === "network" && /^(cannot connect to|cannot reach) /.test(error.message);
}

/** Whether rustls did not trust the presented chain: worth reading it to name its issuer. */
export function isUntrustedIssuer(raw: string): boolean {
  return /UnknownIssuer|BadSignature/.test(raw);
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
    return `the server does not speak TLS on this port: is it a plain-HTTP port? (${tail(raw)})`;
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

/** `host:port` of a URL, with the scheme's default port: how errors name the peer. */
export function hostPort(url: URL): string {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return `${url.hostname}:${port}`;
}

function unixToIso(seconds: string): string {
  return isoTime(Number(seconds) * 1000).replace(/\.000Z$/, "Z");
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
