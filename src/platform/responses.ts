/**
 * What a platform answer means: JSON bodies checked against the contract, problem documents,
 * redirects, oversized bodies and an edge's HTML pages, each mapped to one `PlatformError` whose
 * message never carries a secret or a control character.
 */
import type * as z from "../zod.ts";
import { parseRetryAfter } from "./backoff.ts";
import { ProblemSchema } from "../wire/contract.ts";
import { PlatformError, type PlatformErrorDetails } from "../errors.ts";
import { redact, redactValue } from "../log.ts";

const MAX_DETAIL_CHARS = 200;

/** A successful answer: status, headers and the parsed JSON body (undefined for a 204). */
export interface Answer {
  status: number;
  headers: Headers;
  json: unknown;
}

/** A `PlatformError` with a redacted, single-line message. */
export function platformError(
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

/** The JSON body of a 2xx answer, or an `invalid_response` error for another type or bad JSON. */
export function parseJsonBody(response: Response, bytes: Uint8Array): unknown {
  const type = mediaType(response);
  if (type !== undefined && !isJsonType(type)) {
    throw platformError(
      `platform answered ${response.status} with ${q(type)}, not JSON`,
      "invalid_response",
      { httpStatus: response.status },
    );
  }
  const parsed = tryParseJson(bytes);
  if (!parsed.ok) {
    throw platformError(
      `platform answered ${response.status} with invalid JSON`,
      "invalid_response",
      { httpStatus: response.status },
    );
  }
  return parsed.value;
}

/** The answer's body as `schema` describes it, or an error naming the first field that is not. */
export function validateAnswer<T extends z.ZodMiniType>(answer: Answer, schema: T): z.infer<T> {
  const result = schema.safeParse(answer.json);
  if (result.success) return result.data;
  // Name the field and the expectation only: the received value may be a secret.
  const issue = result.error.issues[0];
  const field = issue && issue.path.length > 0
    ? `field ${q(issue.path.map(String).join("."))}`
    : "body";
  throw platformError(
    `platform answered ${answer.status} with an unexpected body: ${field}: ${
      issue?.message ?? "invalid"
    }`,
    "invalid_response",
    { httpStatus: answer.status },
  );
}

/**
 * The error for a non-2xx answer: a problem document's code and detail, or the content type (and
 * an HTML page's title) of anything else, with `Retry-After`. `mtls` picks the certificate hint.
 */
export function httpError(
  response: Response,
  bytes: Uint8Array,
  nowMs: number,
  mtls: boolean,
): PlatformError {
  const status = response.status;
  const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"), nowMs);
  const retryNote = retryAfterSeconds === undefined
    ? ""
    : ` (retry after ${Math.round(retryAfterSeconds)} s)`;
  const type = mediaType(response);
  const parsed = type === undefined || isJsonType(type) ? tryParseJson(bytes) : undefined;
  if (!parsed?.ok) {
    const what = type === undefined ? "no content type" : q(type);
    const title = type?.includes("html") ? htmlTitle(bytes) : undefined;
    return platformError(
      `platform answered ${status} with ${what}, not JSON${
        title ? ` (page title ${q(title)})` : ""
      }${retryNote}${title === undefined ? "" : certificateHint(mtls, title)}`,
      "http",
      { httpStatus: status, retryAfterSeconds, contentType: type },
    );
  }
  const problem = ProblemSchema.safeParse(parsed.value);
  if (!problem.success) {
    return platformError(`platform answered ${status}${retryNote}`, "http", {
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
  return platformError(
    `platform answered ${status}${safeCode ? ` ${safeCode}` : ""}${
      text ? `: ${text}` : ""
    }${retryNote}${safeCode === "client_certificate_required" ? certificateHint(mtls) : ""}`,
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
function certificateHint(mtls: boolean, pageTitle?: string): string {
  if (pageTitle !== undefined && /SSL certificate error/i.test(pageTitle)) {
    return "; the edge rejected the client certificate";
  }
  if (pageTitle !== undefined && !/No required SSL certificate/i.test(pageTitle)) return "";
  return mtls
    ? "; the edge did not receive the agent certificate"
    : "; the edge requires a client certificate: use --auth mtls (or ONECONNECT_AUTH=mtls)";
}

/** The error for a 3xx answer, naming where it pointed without credentials or query. */
export function redirectError(response: Response, baseUrl: URL): PlatformError {
  const raw = response.headers.get("location");
  let where = "no Location";
  if (raw !== null) {
    try {
      const location = new URL(raw, baseUrl);
      location.username = "";
      location.password = "";
      location.search = "";
      location.hash = "";
      where = q(location.href);
    } catch {
      where = "an unparsable Location";
    }
  }
  return platformError(
    `platform answered ${response.status} redirecting to ${where}; redirects are not followed, check the platform URL`,
    "redirect",
    { httpStatus: response.status },
  );
}

/** The error for an answer whose body is larger than `maxBytes`. */
export function tooLargeError(response: Response, maxBytes: number, nowMs: number): PlatformError {
  // Status and Retry-After still count: a 401 or 503 with a huge page is still a 401 or 503.
  return platformError(
    `platform answered ${response.status} with a body larger than ${maxBytes} bytes; refused`,
    "response_too_large",
    {
      httpStatus: response.status,
      retryAfterSeconds: parseRetryAfter(response.headers.get("retry-after"), nowMs),
    },
  );
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
  const text = decodeUtf8Strict(bytes);
  if (text === null) return { ok: false };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/**
 * UTF-8 `bytes` as text (a leading BOM dropped), or `null` when they are not UTF-8. The lenient
 * decoder and a round trip stand in for `{ fatal: true }`, whose decoder would map more of Deno's
 * code into a steady `run` (docs/footprint.md): a malformed sequence decodes to U+FFFD, which
 * encodes back to other bytes.
 */
export function decodeUtf8Strict(bytes: Uint8Array): string | null {
  const text = new TextDecoder().decode(bytes);
  if (!text.includes("\uFFFD")) return text;
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
  const body = bom ? bytes.subarray(3) : bytes;
  const again = new TextEncoder().encode(text);
  if (again.length !== body.length) return null;
  for (let i = 0; i < again.length; i++) if (again[i] !== body[i]) return null;
  return text;
}

function htmlTitle(bytes: Uint8Array): string | undefined {
  const head = new TextDecoder().decode(bytes.subarray(0, 4096));
  const title = /<title[^<>]*>([^<]{1,200})<\/title>/i.exec(head)?.[1];
  return title === undefined ? undefined : clean(title, 80);
}

/** Redacted, printable, single-line, truncated to `max` characters. */
export function clean(text: string, max = MAX_DETAIL_CHARS): string {
  // deno-lint-ignore no-control-regex
  const flat = redact(text).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ")
    .replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ");
}

/** `text` quoted as in every agent message (JSON string syntax). */
export function q(text: string): string {
  return JSON.stringify(text);
}
