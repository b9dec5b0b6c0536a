/** A platform response read into an {@linkcode Answer}: redirects, status, capped body, JSON. */
import { readCapped } from "../wire/body_reader.ts";
import type { PlatformError } from "../errors.ts";
import {
  type Answer,
  httpError,
  parseJsonBody,
  redirectError,
  tooLargeError,
} from "./responses.ts";

/** What {@linkcode readAnswer} needs to know besides the response. */
export interface ReadAnswerOptions {
  method: "GET" | "POST" | "DELETE";
  /** The platform's base URL, named by a redirect's error. */
  baseUrl: URL;
  /** Largest body accepted. */
  maxBytes: number;
  /** Current wall-clock time in ms, for `Retry-After` HTTP-dates. */
  now: () => number;
  /** The client presents a certificate (chooses the certificate hint of an error status). */
  mtls: boolean;
  /** The error for a body whose read failed (a timeout, a reset). */
  bodyError: (error: unknown) => PlatformError;
}

/**
 * The answer of a 2xx response, its body read within the cap and parsed as JSON (none after a
 * DELETE); a redirect, an oversized body or an error status throws its `PlatformError`.
 */
export async function readAnswer(response: Response, options: ReadAnswerOptions): Promise<Answer> {
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel().catch(() => {});
    throw redirectError(response, options.baseUrl);
  }
  const ok = response.status >= 200 && response.status < 300;
  if (ok && options.method === "DELETE") {
    await response.body?.cancel().catch(() => {});
    return { status: response.status, headers: response.headers, json: undefined };
  }
  let bytes: Uint8Array | undefined;
  try {
    const declared = Number(response.headers.get("content-length") ?? NaN);
    bytes = await readCapped(response.body, options.maxBytes, declared);
  } catch (e) {
    throw options.bodyError(e);
  }
  if (bytes === undefined) throw tooLargeError(response, options.maxBytes, options.now());
  if (!ok) throw httpError(response, bytes, options.now(), options.mtls);
  return {
    status: response.status,
    headers: response.headers,
    json: parseJsonBody(response, bytes),
  };
}
