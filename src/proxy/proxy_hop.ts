/**
 * The shapes a proxy decision is made of, shared by the selection and the lookups it loads lazily
 * (PAC, OS settings), so that those import no selection code.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** One way to reach the platform: directly, or through an HTTP(S) or SOCKS5 proxy (credentials allowed). */
export type ProxyHop = { kind: "direct" } | { kind: "proxy"; url: URL };

/** What the OS setting says for one target. */
export interface OsProxyDecision {
  hops: ProxyHop[];
  /** E.g. `WinHTTP (netsh winhttp show proxy)`. */
  source: string;
}

/** What a proxy URL may look like; safe to show (the redactor leaves it as written). */
const PROXY_URL_HINT =
  "expected http://, https://, socks5:// or socks5h:// and host:port, with user:password@ before the host if the proxy needs credentials";

const PROXY_SCHEMES = new Set(["http:", "https:", "socks5:", "socks5h:"]);

/** Whether `url` names a SOCKS5 proxy (`socks5h:` lets the proxy resolve the platform's name). */
export function isSocksProxy(url: URL): boolean {
  return url.protocol === "socks5:" || url.protocol === "socks5h:";
}

/** `value` as the agent reads a proxy setting: `host:port` without a scheme means http://, as curl. */
export function withProxyScheme(value: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
}

/**
 * A proxy URL the agent can use, or why not (the value is never repeated: it may hold a
 * password). `host:port` without a scheme means http://, as curl reads it; SOCKS defaults to 1080.
 */
export function proxyUrlOrProblem(raw: string): URL | string {
  const value = raw.trim();
  let url: URL;
  try {
    url = new URL(withProxyScheme(value));
  } catch {
    return "not a URL";
  }
  if (!PROXY_SCHEMES.has(url.protocol)) {
    return `the scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not supported`;
  }
  if (url.hostname === "") return "it names no host";
  if (isSocksProxy(url) && url.port === "") url.port = "1080";
  return url;
}

/** Parses a proxy URL from `origin` (a setting or variable name); unusable is a UsageError (exit 2). */
export function parseProxyUrl(raw: string, origin: string): URL {
  const url = proxyUrlOrProblem(raw);
  if (typeof url !== "string") return url;
  throw new UsageError(`Invalid proxy URL (${origin}): ${url}; ${PROXY_URL_HINT}`);
}

/** `scheme://host:port` of a proxy, without credentials: how logs and errors name it. */
export function bareProxyUrl(url: URL): string {
  return `${url.protocol}//${url.host}`;
}
