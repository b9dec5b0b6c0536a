/** The real network of `enroll --check` (DNS, TCP, TLS), each operation ended by its signal. */
import { lookup } from "node:dns/promises";
import { errorMessage } from "../errors.ts";
import { describeHandshakeFailure, isUntrustedIssuer } from "../platform/transport_errors.ts";
import type { HealthResponse } from "../wire/contract.ts";

/** The network operations preflight performs, passed in so every branch is testable. */
export interface PreflightNetwork {
  /** Resolves `hostname` the way connections do (getaddrinfo: hosts file, then DNS). */
  resolve(hostname: string, signal: AbortSignal): Promise<string[]>;
  connectTcp(hostname: string, port: number, signal: AbortSignal): Promise<void>;
  /** A TLS handshake verifying the server chain against `caCerts` (undefined = system roots). */
  handshakeTls(
    hostname: string,
    port: number,
    caCerts: string[] | undefined,
    signal: AbortSignal,
  ): Promise<void>;
  /** `GET api/v1/health` the way enrollment will send it (same TLS pin, same proxy). */
  health(signal: AbortSignal): Promise<{ body: HealthResponse; date: string | null }>;
  /** Monotonic milliseconds, for durations. */
  monotonicMs(): number;
  /** Wall-clock milliseconds, compared with the platform's clock. */
  wallMs(): number;
}

/** `host:port`, an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Settles like `promise`, or rejects when `signal` aborts first; a value arriving after the abort
 * is handed to `dispose` (a connection must not be left open).
 */
function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  dispose: (late: T) => void = () => {},
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error("timed out"));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) dispose(value);
        else resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** The real network, with health through `health` (the enrollment client). */
export function denoPreflightNetwork(
  health: PreflightNetwork["health"],
  caLabel?: string,
): PreflightNetwork {
  return {
    resolve: async (hostname, signal) => {
      const found = await abortable(lookup(hostname, { all: true }), signal);
      return found.map((a) => a.address);
    },
    connectTcp: async (hostname, port, signal) => {
      try {
        const conn = await Deno.connect({ hostname, port, signal });
        conn.close();
      } catch (e) {
        if (signal.aborted) throw new Error("timed out");
        throw e;
      }
    },
    handshakeTls: async (hostname, port, caCerts, signal) => {
      const conn = await abortable(
        Deno.connectTls({ hostname, port, caCerts }),
        signal,
        (late) => late.close(),
      );
      try {
        await abortable(conn.handshake(), signal);
      } catch (e) {
        const raw = errorMessage(e, true);
        if (isUntrustedIssuer(raw)) {
          const { describeUntrustedCertificate } = await import("../trust/tls_diagnosis.ts");
          const text = await describeUntrustedCertificate(
            hostname,
            port,
            5000,
            undefined,
            caCerts,
            caLabel,
          );
          if (text !== undefined) throw new Error(text);
        }
        // The words enroll's client uses for the same failure (one classification for both).
        const url = new URL(`https://${hostPort(hostname, port)}/`);
        throw new Error(describeHandshakeFailure(raw, url, caCerts !== undefined));
      } finally {
        conn.close();
      }
    },
    health,
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now(),
  };
}
