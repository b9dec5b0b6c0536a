import { z } from "zod";

/** Routes of the platform API a fault can target. */
export const FAULT_ROUTES = ["enroll", "heartbeat", "renew", "unenroll", "health", "any"] as const;
/** A route name of the platform API. */
export type FaultRoute = typeof FAULT_ROUTES[number];

/**
 * An injected misbehaviour. With `status` or `body` the platform answers with it instead of
 * handling the request; with only `delayMs` it waits, then handles the request normally.
 */
export const FaultSchema = z.object({
  /** Which route; default "any". */
  route: z.enum(FAULT_ROUTES).optional(),
  /** Forced status code; default 200 when only `body` is given. */
  status: z.number().int().min(100).max(599).optional(),
  /** `Retry-After` value, delay-seconds or an HTTP-date (sent verbatim, garbage allowed). */
  retryAfter: z.string().optional(),
  /** Wait this long before answering. */
  delayMs: z.number().int().nonnegative().optional(),
  /** Raw body; default a problem document when `status` >= 400. */
  body: z.string().optional(),
  /** Content-Type of the forced answer. */
  contentType: z.string().optional(),
  /** Extra response headers (e.g. `Location` for a redirect). */
  headers: z.record(z.string(), z.string()).optional(),
  /** How many matching requests it applies to; default unlimited. */
  times: z.number().int().positive().optional(),
  /** Chance (0..1) that a matching request is affected; default 1. */
  probability: z.number().min(0).max(1).optional(),
  /** Send the body in 1 KiB chunks with this pause between them (a slow-drip server). */
  dripMs: z.number().int().nonnegative().optional(),
  /** Send this many body bytes, then reset the connection (a server dying mid-body). */
  abortAfterBytes: z.number().int().nonnegative().optional(),
});
/** An injected misbehaviour (see {@linkcode FaultSchema}). */
export type Fault = z.infer<typeof FaultSchema>;

interface ActiveFault {
  fault: Fault;
  remaining: number;
}

/** The faults currently armed, consumed as matching requests arrive. */
export class FaultSet {
  #faults: ActiveFault[] = [];
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  /** Arms a fault. */
  add(fault: Fault): void {
    const parsed = FaultSchema.parse(fault);
    this.#faults.push({ fault: parsed, remaining: parsed.times ?? Infinity });
  }

  /** Disarms every fault. */
  clear(): void {
    this.#faults = [];
  }

  /** Number of faults still armed. */
  get size(): number {
    return this.#faults.length;
  }

  /** The first armed fault that applies to this request on `route`, consuming one use of it. */
  take(route: Exclude<FaultRoute, "any">): Fault | null {
    for (const active of this.#faults) {
      const target = active.fault.route ?? "any";
      if (target !== "any" && target !== route) continue;
      if (active.fault.probability !== undefined && this.#random() >= active.fault.probability) {
        continue;
      }
      active.remaining -= 1;
      if (active.remaining <= 0) this.#faults = this.#faults.filter((f) => f !== active);
      return active.fault;
    }
    return null;
  }
}

const TITLES: Record<number, [string, string]> = {
  400: ["Bad Request", "invalid_request"],
  401: ["Unauthorized", "credential_invalid"],
  403: ["Forbidden", "agent_mismatch"],
  404: ["Not Found", "agent_unknown"],
  409: ["Conflict", "conflict"],
  410: ["Gone", "agent_unknown"],
  413: ["Content Too Large", "payload_too_large"],
  429: ["Too Many Requests", "rate_limited"],
  500: ["Internal Server Error", "internal_error"],
  502: ["Bad Gateway", "bad_gateway"],
  503: ["Service Unavailable", "unavailable"],
};

/** Whether a fault replaces the answer (as opposed to only delaying it). */
export function faultAnswers(fault: Fault): boolean {
  return fault.status !== undefined || fault.body !== undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const id = setTimeout(done, ms);
    function done() {
      clearTimeout(id);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Waits `ms`, returning early when `signal` aborts (the platform is closing). */
export function faultDelay(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, signal);
}

/** Builds the forced answer of a fault: status, headers, and a plain, dripping or aborted body. */
export function faultResponse(fault: Fault, signal: AbortSignal): Response {
  const status = fault.status ?? 200;
  const headers = new Headers(fault.headers);
  let body = fault.body;
  if (body === undefined && status >= 400) {
    const [title, code] = TITLES[status] ?? ["Injected Fault", "injected_fault"];
    body = JSON.stringify({
      type: `https://oneconnect.dev/problems/${code}`,
      title,
      status,
      detail: `fault injected by the dev platform (${status})`,
      code,
    });
    headers.set("content-type", fault.contentType ?? "application/problem+json");
  } else if (fault.contentType !== undefined) {
    headers.set("content-type", fault.contentType);
  }
  if (fault.retryAfter !== undefined) headers.set("retry-after", fault.retryAfter);
  if (status === 204 || status === 304 || body === undefined) {
    return new Response(null, { status, headers });
  }
  const bytes = new TextEncoder().encode(body);
  if (fault.dripMs === undefined && fault.abortAfterBytes === undefined) {
    return new Response(bytes, { status, headers });
  }
  const limit = fault.abortAfterBytes ?? bytes.length;
  const chunk = fault.dripMs === undefined ? Math.max(limit, 1) : 1024;
  let offset = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (offset >= limit) {
        if (fault.abortAfterBytes !== undefined) {
          // Let the head and the first bytes reach the client before the reset.
          await sleep(50, signal);
          controller.error(new Error("fault: connection reset mid-body"));
        } else {
          controller.close();
        }
        return;
      }
      if (offset > 0 && fault.dripMs !== undefined) await sleep(fault.dripMs, signal);
      const end = Math.min(offset + chunk, limit);
      controller.enqueue(bytes.subarray(offset, end));
      offset = end;
    },
  });
  if (fault.abortAfterBytes === undefined) headers.set("content-length", String(bytes.length));
  return new Response(stream, { status, headers });
}
