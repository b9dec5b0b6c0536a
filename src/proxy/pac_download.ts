/**
 * Reads a PAC file: an `http://` URL over a plain socket (HTTP/1.0, one deadline for the whole
 * exchange, every length, chunk and encoding parsed strictly in one pass) or a local file, both
 * size capped. Loaded with src/proxy/pac.ts, only when a PAC is configured.
 */
import { USER_AGENT } from "../version.ts";
import { readCapped } from "../wire/body_reader.ts";

/** Largest PAC file accepted. */
const PAC_MAX_BYTES = 1024 * 1024;
/** Time allowed to fetch a PAC file. */
export const PAC_FETCH_TIMEOUT_MS = 10_000;

/**
 * Reads the PAC: an `http://` URL fetched directly (HTTP/1.0 over a plain socket, so that no TLS
 * client is made before the platform's), or a file path. `https://` PAC URLs are refused.
 */
export async function loadPacScript(
  source: string,
  timeoutMs = PAC_FETCH_TIMEOUT_MS,
  signal?: AbortSignal,
) {
  if (/^https:\/\//i.test(source)) {
    throw new Error("https:// PAC URLs are not supported; serve it over http:// or use a file");
  }
  const bytes = /^http:\/\//i.test(source)
    ? await httpGet(new URL(source), timeoutMs, signal)
    : await readPacFile(source.replace(/^file:\/\//i, ""));
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error("the PAC file is not UTF-8 text");
  }
}

async function readPacFile(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const info = await file.stat();
  if (!info.isFile) throw new Error(`${JSON.stringify(path)} is not a file`);
  return await readAll(file.readable, PAC_MAX_BYTES, info.size);
}

async function readAll(
  stream: ReadableStream<Uint8Array>,
  max: number,
  expected?: number,
): Promise<Uint8Array> {
  const bytes = await readCapped(stream, max, expected);
  if (bytes === undefined) throw new Error(`larger than ${PAC_MAX_BYTES} bytes`);
  return bytes;
}

/**
 * One GET over a plain socket. The whole exchange (connect, request, every byte of the answer)
 * has one deadline, and `signal` (the agent stopping) ends it at once: the socket is closed.
 */
async function httpGet(url: URL, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
  const port = Number(url.port || 80);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const connectSignal = signal
    ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
    : AbortSignal.timeout(timeoutMs);
  const conn = await Deno.connect({ hostname, port, signal: connectSignal });
  // Why the socket was closed under the reader, when it was.
  let stopped: string | undefined;
  const close = () => {
    try {
      conn.close();
    } catch {
      // closed already
    }
  };
  const timer = setTimeout(() => {
    stopped ??= `no complete answer within ${timeoutMs / 1000} s`;
    close();
  }, timeoutMs);
  const onAbort = () => {
    stopped ??= "the PAC download was aborted";
    close();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const request = `GET ${url.pathname}${url.search} HTTP/1.0\r\nHost: ${url.host}\r\n` +
      `User-Agent: ${USER_AGENT}\r\nAccept: application/x-ns-proxy-autoconfig, */*\r\n` +
      "Connection: close\r\n\r\n";
    const encoded = new TextEncoder().encode(request);
    let raw: Uint8Array;
    try {
      let written = 0;
      while (written < encoded.length) written += await conn.write(encoded.subarray(written));
      raw = await readAll(conn.readable, PAC_MAX_BYTES + 16 * 1024);
    } catch (e) {
      if (stopped !== undefined) throw new Error(stopped);
      throw e;
    }
    if (stopped !== undefined) throw new Error(stopped);
    return parseHttpResponse(raw);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    close();
  }
}

/**
 * The body of a raw HTTP/1.x answer; anything but 200 is an error, and so is a malformed length,
 * chunk or encoding (each refused in one pass: a hostile server cannot make this loop).
 */
export function parseHttpResponse(raw: Uint8Array): Uint8Array {
  const text = new TextDecoder("latin1").decode(raw.subarray(0, Math.min(raw.length, 16 * 1024)));
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw new Error("the server sent no complete HTTP header");
  const [statusLine = "", ...headerLines] = text.slice(0, end).split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
  if (status !== "200") {
    throw new Error(
      status ? `the server answered ${status}` : "the server did not answer in HTTP/1.x",
    );
  }
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error("the server sent a malformed HTTP header");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (headers.has(name) && headers.get(name) !== value) {
      throw new Error(`the server sent ${name} twice`);
    }
    headers.set(name, value);
  }
  const encoding = headers.get("content-encoding")?.toLowerCase();
  if (encoding !== undefined && encoding !== "identity") {
    throw new Error(`the server sent the PAC with Content-Encoding ${JSON.stringify(encoding)}`);
  }
  let body = raw.subarray(end + 4);
  const transfer = headers.get("transfer-encoding")?.toLowerCase();
  if (transfer === "chunked") {
    body = dechunk(body);
  } else if (transfer !== undefined) {
    throw new Error(`the server sent Transfer-Encoding ${JSON.stringify(transfer)}`);
  } else if (headers.has("content-length")) {
    const declared = headers.get("content-length")!;
    if (!/^\d{1,10}$/.test(declared)) throw new Error("the server sent an invalid Content-Length");
    const length = Number(declared);
    if (body.length < length) throw new Error("the answer ended before its Content-Length");
    body = body.subarray(0, length);
  }
  if (body.length > PAC_MAX_BYTES) throw new Error(`larger than ${PAC_MAX_BYTES} bytes`);
  return body;
}

/** A chunked body decoded (RFC 9112 §7.1), or an error for anything malformed or cut short. */
function dechunk(body: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = indexOfCrlf(body, at);
    if (lineEnd < 0) throw new Error("the chunked answer ended before its last chunk");
    const line = new TextDecoder("latin1").decode(body.subarray(at, lineEnd));
    // Hex digits, then optional extensions; never a sign, a space or 0x (parseInt took those).
    const digits = /^([0-9a-fA-F]{1,8})(?:[ \t]*;.*)?$/.exec(line)?.[1];
    if (digits === undefined) throw new Error("the server sent an invalid chunk size");
    const size = parseInt(digits, 16);
    if (size === 0) break;
    const start = lineEnd + 2;
    if (start + size + 2 > body.length) {
      throw new Error("the chunked answer ended inside a chunk");
    }
    if (body[start + size] !== 13 || body[start + size + 1] !== 10) {
      throw new Error("a chunk is longer than its size");
    }
    parts.push(body.subarray(start, start + size));
    at = start + size + 2;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((offset, part) => (out.set(part, offset), offset + part.length), 0);
  return out;
}

/** Index of the next CR LF in `bytes` from `from`, or -1. */
function indexOfCrlf(bytes: Uint8Array, from: number): number {
  for (let i = bytes.indexOf(13, from); i >= 0; i = bytes.indexOf(13, i + 1)) {
    if (bytes[i + 1] === 10) return i;
  }
  return -1;
}
