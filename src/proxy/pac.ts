/**
 * Proxy auto-config: loads a PAC file (http:// URL or local file, size and time capped) and
 * evaluates `FindProxyForURL` in a Worker with no permissions and a time limit, which ends as soon
 * as the answer is in. Loaded only when a PAC is configured.
 */
import { lookup } from "node:dns/promises";
import type { PacAnswer, PacRequest } from "./pac_worker.ts";
import { type ProxyHop, proxyUrlOrProblem } from "./proxy_hop.ts";
import { USER_AGENT } from "../version.ts";
import { errorMessage } from "../errors.ts";
import { readCapped } from "../platform/body_reader.ts";

/** Largest PAC file accepted. */
export const PAC_MAX_BYTES = 1024 * 1024;
/** Time allowed to fetch a PAC file. */
const PAC_FETCH_TIMEOUT_MS = 10_000;
/** Time allowed for one evaluation of `FindProxyForURL`. */
const PAC_EVAL_TIMEOUT_MS = 3_000;
/** Evaluation rounds: each may reveal names to resolve for the next. */
const MAX_DNS_ROUNDS = 4;

/** Seams of {@linkcode pacHops}. */
export interface PacDeps {
  /** Resolves a name to an IPv4 address, or null. */
  resolve: (host: string) => Promise<string | null>;
  myIp: () => string;
  nowMs: () => number;
  fetchTimeoutMs: number;
  evalTimeoutMs: number;
}

/** The real network and clock. */
const denoPacDeps: PacDeps = {
  resolve: async (host) => {
    try {
      return (await lookup(host, { family: 4 })).address;
    } catch {
      return null;
    }
  },
  myIp: () => {
    try {
      const found = Deno.networkInterfaces().find((i) =>
        i.family === "IPv4" && !i.address.startsWith("127.")
      );
      return found?.address ?? "127.0.0.1";
    } catch {
      return "127.0.0.1";
    }
  },
  nowMs: () => Date.now(),
  fetchTimeoutMs: PAC_FETCH_TIMEOUT_MS,
  evalTimeoutMs: PAC_EVAL_TIMEOUT_MS,
};

/** The hops the PAC at `source` chooses for `target`. */
export async function pacHops(
  source: string,
  target: URL,
  deps: PacDeps = denoPacDeps,
): Promise<ProxyHop[]> {
  const script = await loadPacScript(source, deps.fetchTimeoutMs);
  return parsePacResult(await evaluatePac(script, target, deps));
}

/**
 * Reads the PAC: an `http://` URL fetched directly (HTTP/1.0 over a plain socket, so that no TLS
 * client is made before the platform's), or a file path. `https://` PAC URLs are refused.
 */
export async function loadPacScript(source: string, timeoutMs = PAC_FETCH_TIMEOUT_MS) {
  if (/^https:\/\//i.test(source)) {
    throw new Error("https:// PAC URLs are not supported; serve it over http:// or use a file");
  }
  const bytes = /^http:\/\//i.test(source)
    ? await httpGet(new URL(source), timeoutMs)
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

async function httpGet(url: URL, timeoutMs: number): Promise<Uint8Array> {
  const port = Number(url.port || 80);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const conn = await Deno.connect({ hostname, port, signal: AbortSignal.timeout(timeoutMs) });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const request = `GET ${url.pathname}${url.search} HTTP/1.0\r\nHost: ${url.host}\r\n` +
      `User-Agent: ${USER_AGENT}\r\nAccept: application/x-ns-proxy-autoconfig, */*\r\n` +
      "Connection: close\r\n\r\n";
    const encoded = new TextEncoder().encode(request);
    let written = 0;
    while (written < encoded.length) written += await conn.write(encoded.subarray(written));
    let raw: Uint8Array;
    try {
      raw = await readAll(conn.readable, PAC_MAX_BYTES + 16 * 1024);
    } catch (e) {
      if (errorMessage(e).startsWith("larger")) throw e;
      throw new Error(`no complete answer within ${timeoutMs / 1000} s`);
    }
    return parseHttpResponse(raw);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer or by the end of the stream
    }
  }
}

/** The body of a raw HTTP/1.x answer; anything but 200 is an error. */
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
  const headers = new Map(headerLines.map((line) => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  }));
  let body = raw.subarray(end + 4);
  if (/chunked/i.test(headers.get("transfer-encoding") ?? "")) body = dechunk(body);
  const length = Number(headers.get("content-length") ?? NaN);
  if (Number.isInteger(length) && length >= 0) {
    if (body.length < length) throw new Error("the answer ended before its Content-Length");
    body = body.subarray(0, length);
  }
  if (body.length > PAC_MAX_BYTES) throw new Error(`larger than ${PAC_MAX_BYTES} bytes`);
  return body;
}

function dechunk(body: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at < body.length) {
    let lineEnd = at;
    while (lineEnd + 1 < body.length && !(body[lineEnd] === 13 && body[lineEnd + 1] === 10)) {
      lineEnd++;
    }
    const size = parseInt(new TextDecoder().decode(body.subarray(at, lineEnd)), 16);
    if (!Number.isFinite(size)) throw new Error("invalid chunked encoding");
    if (size === 0) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((offset, part) => (out.set(part, offset), offset + part.length), 0);
  return out;
}

// From the bundle (tasks/bundle.ts), the Worker is the bundle's own pac_worker.js entry point.
// Bundled, the chunks sit at the bundle root and the Worker entry keeps its folder under src/.
const PAC_WORKER = import.meta.url.endsWith(".ts") ? "./pac_worker.ts" : "./proxy/pac_worker.js";

/**
 * Runs `FindProxyForURL(url, host)` in a Worker with no permissions, answering DNS questions from
 * here, and ends the Worker before returning (or when the time limit passes).
 */
export async function evaluatePac(script: string, target: URL, deps: PacDeps): Promise<string> {
  const host = target.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const dns: Record<string, string | null> = { [host]: await deps.resolve(host) };
  const worker = new Worker(new URL(PAC_WORKER, import.meta.url).href, {
    type: "module",
    // Requires --unstable-worker-options (tasks/permissions.flags): the PAC gets no permission.
    deno: { permissions: "none" },
  } as WorkerOptions);
  try {
    for (let round = 1;; round++) {
      const request: PacRequest = {
        script,
        url: target.href,
        host,
        dns,
        myIp: deps.myIp(),
        nowMs: deps.nowMs(),
      };
      const answer = await ask(worker, request, deps.evalTimeoutMs);
      const fresh = answer.unresolved.filter((name) => !Object.hasOwn(dns, name)).slice(0, 32);
      if (fresh.length > 0 && round < MAX_DNS_ROUNDS) {
        const found = await Promise.all(fresh.map((name) => deps.resolve(name)));
        fresh.forEach((name, i) => dns[name] = found[i] ?? null);
        continue;
      }
      if (!answer.ok) throw new Error(`FindProxyForURL failed: ${answer.error}`);
      return answer.result;
    }
  } finally {
    worker.terminate();
  }
}

function ask(worker: Worker, request: PacRequest, timeoutMs: number): Promise<PacAnswer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`FindProxyForURL did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      worker.onmessage = null;
      worker.onerror = null;
    };
    worker.onmessage = (event: MessageEvent<PacAnswer>) => {
      done();
      resolve(event.data);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      done();
      reject(new Error(`the PAC worker failed: ${event.message}`));
    };
    worker.postMessage(request);
  });
}

// PAC entry kinds and the proxy URL scheme each means.
const PAC_SCHEMES: Record<string, string> = {
  PROXY: "http",
  HTTP: "http",
  HTTPS: "https",
  SOCKS: "socks5",
  SOCKS5: "socks5",
};

/**
 * Turns `PROXY a:1; HTTPS b:2; SOCKS5 c:3; DIRECT` into hops, in order; an empty answer means
 * DIRECT. `SOCKS` (SOCKS v4 to browsers) is tried as SOCKS5, which SOCKS servers speak too.
 */
export function parsePacResult(result: string): ProxyHop[] {
  const hops: ProxyHop[] = [];
  const skipped: string[] = [];
  for (const raw of result.split(";")) {
    const entry = raw.trim();
    if (entry === "") continue;
    const [kind = "", address = ""] = entry.split(/\s+/, 2);
    const upper = kind.toUpperCase();
    if (upper === "DIRECT") {
      hops.push({ kind: "direct" });
    } else if (PAC_SCHEMES[upper] !== undefined && address) {
      const url = proxyUrlOrProblem(`${PAC_SCHEMES[upper]}://${address}`);
      const hostPortOnly = typeof url !== "string" && !url.username && !url.search &&
        (url.pathname === "/" || url.pathname === "");
      if (hostPortOnly) hops.push({ kind: "proxy", url });
      else skipped.push(entry);
    } else {
      skipped.push(entry);
    }
  }
  if (hops.length === 0 && skipped.length === 0) return [{ kind: "direct" }];
  if (hops.length === 0) {
    throw new Error(
      `FindProxyForURL returned nothing usable (${JSON.stringify(result.slice(0, 100))})`,
    );
  }
  return hops;
}
