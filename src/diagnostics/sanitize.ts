/**
 * What a diagnostics entry may show of a URL or an error message. URLs keep their scheme, host,
 * port and path: never user info, query or fragment (where a proxy password or a signed token
 * travels). Messages are redacted (`redact` in src/log.ts) and every URL in them is cut the same
 * way, since some messages quote a rejected value verbatim.
 *
 * @module
 */
import { redact } from "../log.ts";

/** `url` without user info, query and fragment; `"<not a URL>"` when it does not parse. */
export function safeUrl(url: URL | string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "<not a URL>";
  }
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
}

const URL_IN_TEXT = /[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]*/gi;

/** One line of `text`, redacted, with each URL in it cut by {@linkcode safeUrl}. */
export function safeMessage(text: string): string {
  return redact(text.replace(URL_IN_TEXT, (url) => safeUrl(url))).replace(/\r?\n/g, " ");
}

/**
 * A configuration error with the rejected values withheld: a value given for a known key of
 * agent.json is quoted in the message (`"log_level" is "x": ...`) and could be anything.
 */
export function withheldConfigValues(message: string): string {
  return message.replace(/("[^"]*") is .*?: /g, "$1 has a value (withheld): ");
}
