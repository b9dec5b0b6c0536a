/**
 * Proxy auto-config: loads a PAC file (http:// URL or local file, size and time capped) and
 * evaluates `FindProxyForURL` in a child process of the agent's own executable with no
 * permissions, a heap limit and a time limit, killed as soon as the answer is in. Loaded only
 * when a PAC is configured.
 */
import { lookup } from "node:dns/promises";
import * as z from "../zod.ts";
import { PAC_ERROR_CHARS, type PacAnswer, type PacRequest } from "./pac_worker.ts";
import { PAC_EVALUATOR_ARG } from "./pac_entry.ts";
import type { ProxyHop } from "./proxy_hop.ts";
import { USER_AGENT } from "../version.ts";
import { errorMessage } from "../errors.ts";
import { readCapped } from "../platform/body_reader.ts";

/** Largest PAC file accepted. */
export const PAC_MAX_BYTES = 1024 * 1024;
/** Time allowed to fetch a PAC file. */
const PAC_FETCH_TIMEOUT_MS = 10_000;
/** Time allowed for one evaluation of `FindProxyForURL`, the evaluator's start included. */
const PAC_EVAL_TIMEOUT_MS = 3_000;
/** Heap of the evaluator process: a PAC is a few kB of script (V8 needs about 10 MB to start). */
export const PAC_MEMORY_MB = 64;
/**
 * Resident memory the evaluator may reach above its heap limit: the process starts at ~41 MB and
 * a script that fills its 64 MB heap peaks at ~150 MB. This catches what the heap limit does not
 * (ArrayBuffers live outside the V8 heap); Linux only (/proc), elsewhere the time limit bounds it.
 */
const PAC_RSS_MARGIN_MB = 128;
/** How often the evaluator's resident memory is read. */
const RSS_POLL_MS = 20;
/** Longest answer line read from the evaluator. */
const PAC_ANSWER_MAX_BYTES = 64 * 1024;
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
  /** Heap limit of the evaluator process, in MB. */
  evalMemoryMb: number;
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
  evalMemoryMb: PAC_MEMORY_MB,
};

/**
 * The hops the PAC at `source` chooses for `target`. Any failure is one error of one line (at
 * most 300 characters), whatever the script or the server sent.
 */
export async function pacHops(
  source: string,
  target: URL,
  deps: PacDeps = denoPacDeps,
  signal?: AbortSignal,
): Promise<ProxyHop[]> {
  try {
    const script = await loadPacScript(source, deps.fetchTimeoutMs, signal);
    return parsePacResult(await evaluatePac(script, target, deps, signal));
  } catch (e) {
    // deno-lint-ignore no-control-regex
    const line = errorMessage(e).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ");
    throw new Error(line.length > 300 ? `${line.slice(0, 299)}…` : line);
  }
}

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

// From the bundle (tasks/bundle.ts), the evaluator is the bundle's own pac_evaluator.js entry
// point. Bundled, the chunks sit at the bundle root and that entry keeps its folder under src/.
const PAC_EVALUATOR = import.meta.url.endsWith(".ts")
  ? "./pac_evaluator.ts"
  : "./proxy/pac_evaluator.js";

/** What the evaluator may answer: anything else on its stdout is a PAC error. */
const PacAnswerSchema = z.union([
  z.object({
    ok: z.literal(true),
    result: z.string().check(z.maxLength(4096)),
    unresolved: z.array(z.string().check(z.maxLength(255))),
  }),
  z.object({
    ok: z.literal(false),
    error: z.string(),
    unresolved: z.array(z.string().check(z.maxLength(255))),
  }),
]);

/**
 * The evaluator process: `deno run` of pac_evaluator.ts with no permission flag, or a compiled agent
 * (its own Deno) with the hidden argument, which drops the agent's permissions before reading.
 * The heap limit goes both ways (a compiled binary takes no --v8-flags after its build).
 */
function startEvaluator(memoryMb: number): Deno.ChildProcess {
  const heap = `--max-old-space-size=${memoryMb}`;
  const args = Deno.build.standalone ? [PAC_EVALUATOR_ARG] : [
    "run",
    "--quiet",
    "--no-config",
    "--no-lock",
    "--no-prompt",
    "--no-remote",
    "--no-npm",
    `--v8-flags=${heap}`,
    new URL(PAC_EVALUATOR, import.meta.url).href,
  ];
  return new Deno.Command(Deno.execPath(), {
    args,
    clearEnv: true,
    env: { DENO_V8_FLAGS: heap, NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    // Whatever the script or V8 prints (an out-of-memory report) never reaches the agent's output.
    stderr: "null",
  }).spawn();
}

/**
 * Runs `FindProxyForURL(url, host)` in a child process with no permission (see
 * {@linkcode startEvaluator}), answering DNS questions from here; the process is killed before
 * this returns, when the time limit passes or when `signal` aborts.
 */
export async function evaluatePac(
  script: string,
  target: URL,
  deps: PacDeps,
  signal?: AbortSignal,
): Promise<string> {
  const host = target.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const dns: Record<string, string | null> = { [host]: await deps.resolve(host) };
  let child: Deno.ChildProcess;
  try {
    child = startEvaluator(deps.evalMemoryMb);
  } catch (e) {
    throw new Error(
      `cannot start the PAC evaluator ${JSON.stringify(Deno.execPath())}: ${
        errorMessage(e)
      } (the agent's --allow-run must list its own executable; README "Proxy auto-config")`,
    );
  }
  const rssLimitMb = deps.evalMemoryMb + PAC_RSS_MARGIN_MB;
  const watch = watchResidentMemory(child, rssLimitMb);
  const death = () =>
    watch.exceeded
      ? `the PAC evaluator exceeded its memory budget of ${rssLimitMb} MB and was stopped`
      : undefined;
  const answers = answerLines(child);
  const writer = child.stdin.getWriter();
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
      const answer = await ask(child, writer, answers, request, deps, death, signal);
      const fresh = answer.unresolved.filter((name) => !Object.hasOwn(dns, name)).slice(0, 32);
      if (fresh.length > 0 && round < MAX_DNS_ROUNDS) {
        const found = await Promise.all(fresh.map((name) => deps.resolve(name)));
        fresh.forEach((name, i) => dns[name] = found[i] ?? null);
        continue;
      }
      if (!answer.ok) {
        throw new Error(`FindProxyForURL failed: ${answer.error.slice(0, PAC_ERROR_CHARS)}`);
      }
      return answer.result;
    }
  } finally {
    clearInterval(watch.timer);
    // Nothing the script started (a Worker, a timer) outlives its process.
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await writer.abort().catch(() => {});
    await answers.return(undefined).catch(() => {});
    await child.status;
  }
}

/**
 * Kills `child` once its resident memory passes `limitMb` (Linux `/proc/<pid>/status`); stops
 * watching where that file cannot be read.
 */
function watchResidentMemory(child: Deno.ChildProcess, limitMb: number) {
  const path = `/proc/${child.pid}/status`;
  const watch = {
    exceeded: false,
    timer: setInterval(() => {
      let kib: number;
      try {
        kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(Deno.readTextFileSync(path))?.[1] ?? 0);
      } catch {
        clearInterval(watch.timer);
        return;
      }
      if (kib <= limitMb * 1024) return;
      watch.exceeded = true;
      clearInterval(watch.timer);
      try {
        child.kill("SIGKILL");
      } catch {
        // gone already
      }
    }, RSS_POLL_MS),
  };
  return watch;
}

/** The evaluator's stdout, one line at a time; a line over the cap ends it with an error. */
async function* answerLines(child: Deno.ChildProcess): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of child.stdout) {
    pending += decoder.decode(chunk, { stream: true });
    for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
      yield pending.slice(0, end);
      pending = pending.slice(end + 1);
    }
    if (pending.length > PAC_ANSWER_MAX_BYTES) {
      throw new Error(`the PAC evaluator wrote more than ${PAC_ANSWER_MAX_BYTES} bytes`);
    }
  }
}

async function ask(
  child: Deno.ChildProcess,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  answers: AsyncGenerator<string>,
  request: PacRequest,
  deps: PacDeps,
  death: () => string | undefined,
  signal?: AbortSignal,
): Promise<PacAnswer> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`FindProxyForURL did not answer within ${deps.evalTimeoutMs / 1000} s`)),
      deps.evalTimeoutMs,
    );
    onAbort = () => reject(new Error("the PAC evaluation was aborted"));
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  const exchange = async (): Promise<PacAnswer> => {
    await writer.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
    const next = await answers.next();
    if (next.done) {
      const status = await child.status;
      const known = death();
      if (known !== undefined) throw new Error(known);
      const how = status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
      throw new Error(
        `the PAC evaluator stopped (${how}) without an answer; a script that needs more than ` +
          `${deps.evalMemoryMb} MB of memory ends so`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(next.value);
    } catch {
      parsed = undefined;
    }
    const answer = PacAnswerSchema.safeParse(parsed);
    if (!answer.success) throw new Error("the PAC evaluator gave an invalid answer");
    return answer.data;
  };
  const exchanged = exchange();
  // Lost to the time limit, it still settles (the killed process's pipe closes): no unhandled error.
  exchanged.catch(() => {});
  try {
    return await Promise.race([exchanged, stop]);
  } catch (e) {
    // The evaluator's stdin closes when it dies: name the death, not the broken pipe.
    if (e instanceof Deno.errors.BrokenPipe) {
      const status = await child.status;
      throw new Error(
        death() ?? `the PAC evaluator stopped (exit code ${status.code}) without an answer`,
      );
    }
    throw e;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Turns `PROXY a:1; HTTPS b:2; DIRECT` into hops, in order. SOCKS entries are skipped (not
 * supported); an empty answer means DIRECT.
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
    } else if ((upper === "PROXY" || upper === "HTTP" || upper === "HTTPS") && address) {
      try {
        const scheme = upper === "HTTPS" ? "https" : "http";
        const url = new URL(`${scheme}://${address}`);
        if (url.pathname !== "/" || url.username || url.search) throw new Error("not host:port");
        hops.push({ kind: "proxy", url });
      } catch {
        skipped.push(entry);
      }
    } else {
      skipped.push(entry);
    }
  }
  if (hops.length === 0 && skipped.length === 0) return [{ kind: "direct" }];
  if (hops.length === 0) {
    throw new Error(
      `FindProxyForURL returned nothing usable (${
        JSON.stringify(result.slice(0, 100))
      }; SOCKS is not supported)`,
    );
  }
  return hops;
}
