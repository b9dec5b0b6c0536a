/**
 * The `preflight.json` entry: the checks of `enroll --check` (src/enrollment/preflight.ts) run
 * fresh against the enrolled identity's platform and trust (or, before enrollment, the configured
 * platform), all of them within one deadline. `--no-network` skips it.
 *
 * @module
 */
import type { CommandContext } from "../config/context.ts";
import { timeoutSignal } from "../deadline.ts";
import { preflight, type PreflightCheck } from "../enrollment/preflight.ts";
import { denoPreflightNetwork, type PreflightNetwork } from "../enrollment/preflight_network.ts";
import { errorMessage } from "../errors.ts";
import type { Identity } from "../state/identity_store.ts";
import { trustOf } from "../trust/trust_source.ts";
import type { DiagnosticEntry, Unreadable } from "./manifest.ts";
import { safeMessage } from "./sanitize.ts";

/** How long the whole preflight may take. */
const PREFLIGHT_DEADLINE_MS = 15_000;

/** A network whose every operation also ends when `deadline` aborts. */
function boundedNetwork(net: PreflightNetwork, deadline: AbortSignal): PreflightNetwork {
  const both = (signal: AbortSignal) => AbortSignal.any([signal, deadline]);
  return {
    resolve: (hostname, signal) => net.resolve(hostname, both(signal)),
    connectTcp: (hostname, port, signal) => net.connectTcp(hostname, port, both(signal)),
    handshakeTls: (hostname, port, cas, signal) =>
      net.handshakeTls(hostname, port, cas, both(signal)),
    health: (signal) => net.health(both(signal)),
    monotonicMs: () => net.monotonicMs(),
    wallMs: () => net.wallMs(),
  };
}

/** Options of {@linkcode preflightEntry}. */
export interface PreflightEntryOptions {
  deadlineMs?: number;
  /** Replaces the real network (tests). */
  network?: (health: PreflightNetwork["health"]) => PreflightNetwork;
}

/** The `preflight.json` entry; `skip` says why the checks were not run. */
export async function preflightEntry(
  ctx: CommandContext,
  identity: Identity | null,
  skip: string | undefined,
  options: PreflightEntryOptions = {},
): Promise<{ entry: DiagnosticEntry; unreadable: Unreadable[] }> {
  const deadlineMs = options.deadlineMs ?? PREFLIGHT_DEADLINE_MS;
  const entry = (content: Record<string, unknown>): DiagnosticEntry => ({
    name: "preflight.json",
    source:
      "the checks of `enroll --check`, run now (DNS, TCP, proxy decision, TLS, health, clock)",
    noSecret:
      "check names, outcomes and details written by the agent, redacted, URLs without user info or query; no token is read or sent",
    content: { deadline_seconds: deadlineMs / 1000, ...content },
  });
  if (skip !== undefined) return { entry: entry({ skipped: skip }), unreadable: [] };
  // As `run` trusts it (src/platform/identity_client.ts): its CAs, else a root store.
  const pinned = identity === null
    ? []
    : [...identity.ca_certificates, ...identity.bootstrap_ca_certificates];
  const target = identity === null ? undefined : {
    url: new URL(identity.platform_url),
    cas: pinned.length > 0 ? pinned : undefined,
    trust: trustOf(identity),
  };
  if (target === undefined && ctx.config.platformUrl === undefined) {
    return {
      entry: entry({ skipped: "not enrolled and no platform URL configured" }),
      unreadable: [],
    };
  }
  const started = performance.now();
  const { signal, deadline } = timeoutSignal(deadlineMs);
  using _ = deadline;
  const base = options.network ?? denoPreflightNetwork;
  // A step outside the network seam (a PAC script, the trust) must not hold the bundle either:
  // a second after the deadline, whatever has not answered is abandoned.
  const abandoned = new Promise<"deadline">((resolve) =>
    signal.addEventListener("abort", () => setTimeout(() => resolve("deadline"), 1_000), {
      once: true,
    })
  );
  const outcome = await Promise.race([
    preflight(
      ctx,
      { timeoutSeconds: Math.ceil(deadlineMs / 1000), identity: target },
      (health) => boundedNetwork(base(health), signal),
    ).then(
      (checks) => ({ checks }),
      (e: unknown) => ({ error: safeMessage(errorMessage(e)) }),
    ),
    abandoned,
  ]);
  const elapsed = Math.round(performance.now() - started);
  if (outcome === "deadline") {
    const reason = `no result within the ${deadlineMs / 1000} s deadline`;
    return {
      entry: entry({ completed: false, error: reason, elapsed_ms: elapsed }),
      unreadable: [{ what: "preflight", reason }],
    };
  }
  if ("error" in outcome) {
    return {
      entry: entry({ completed: false, error: outcome.error, elapsed_ms: elapsed }),
      unreadable: [],
    };
  }
  return {
    entry: entry({
      completed: true,
      deadline_reached: signal.aborted,
      elapsed_ms: elapsed,
      target: identity === null
        ? "the configured platform (not enrolled)"
        : "the enrolled identity's platform and trust",
      checks: outcome.checks.map((c: PreflightCheck) => ({
        name: c.name,
        status: c.status,
        detail: safeMessage(c.detail),
      })),
    }),
    unreadable: [],
  };
}
