/**
 * Proxy auto-config: loads a PAC file (pac_download.ts) and evaluates `FindProxyForURL` in a child process of the agent's own executable with no
 * permissions, a heap limit and a time limit, killed as soon as the answer is in. Loaded only
 * when a PAC is configured.
 */
import { lookup } from "node:dns/promises";
import * as z from "../zod.ts";
import { PAC_ERROR_CHARS, type PacAnswer, type PacRequest } from "./pac_worker.ts";
import { PAC_EVALUATOR_ARG } from "./pac_entry.ts";
import { type ProxyHop, proxyUrlOrProblem } from "./proxy_hop.ts";
import { errorMessage } from "../errors.ts";
import { loadPacScript, PAC_FETCH_TIMEOUT_MS } from "./pac_download.ts";

/** Time allowed for one evaluation of `FindProxyForURL`, the evaluator's start included. */
const PAC_EVAL_TIMEOUT_MS = 3_000;
/** Heap of the evaluator process: a PAC is a few kB of script (V8 needs about 10 MB to start). */
const PAC_MEMORY_MB = 64;
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
      } (the agent's --allow-run must list its own executable; docs/networks.md "Proxies: PAC and OS settings")`,
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
 * Kills `child` once its resident memory passes `limitMb` (Linux `/proc/<pid>/status`; Deno 2.9.6
 * refuses /proc to the agent's own permissions, so in production the time limit bounds it); stops
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
