/**
 * The platform URL rule, shared by configuration, the stored identity and TLS diagnosis: https
 * anywhere, http only on loopback.
 *
 * @module
 */
import { UsageError } from "../errors.ts";

const LOOPBACK_HOSTS = new Set(["localhost", "[::1]", "::1"]);

/** Whether `hostname` (as in `URL.hostname`) is a loopback address. */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase()) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Parses a platform URL: https anywhere, http only on loopback (a bearer token must never cross
 * a network in clear text). Query strings and fragments are refused since paths are appended.
 */
export function parsePlatformUrl(raw: string, origin = "--url"): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(
      `Invalid platform URL ${JSON.stringify(raw)} (${origin}): expected https://<host>[:port]`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UsageError(
      `Invalid platform URL ${JSON.stringify(raw)} (${origin}): scheme must be https`,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError(
      `Invalid platform URL (${origin}): remove credentials, query and fragment; expected https://<host>[:port]`,
    );
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new UsageError(
      `Refusing plain http:// to non-loopback host ${
        JSON.stringify(url.hostname)
      } (${origin}): use https://`,
    );
  }
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}
