/**
 * CA pins (`sha256:<hex>` of a CA certificate's DER SubjectPublicKeyInfo, as `openssl x509 -pubkey
 * | openssl pkey -pubin -outform der | openssl dgst -sha256` prints it), and enrollment trust from
 * a pin: read the chain the server presents without trusting it, keep the CA certificates whose
 * key matches a pin. Loaded by `enroll` and `ca-pin` only.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect } from "node:tls";
import { certificatePin, parseCertificate, splitPemBundle, toPem } from "./certificates.ts";
import { errorMessage, PlatformError, UsageError } from "../errors.ts";

const PIN_PATTERN = /^sha256:([0-9a-f]{64})$/i;

/** Parses `sha256:<64 hex>` (any case) into its canonical lower-case form; UsageError otherwise. */
export function parseCaPin(raw: string, origin = "--ca-pin"): string {
  const match = PIN_PATTERN.exec(raw.trim());
  if (!match) {
    throw new UsageError(
      `Invalid CA pin ${
        JSON.stringify(raw)
      } (${origin}): expected sha256:<64 hex digits>, as printed by "oneconnect-agent ca-pin <ca.pem>"`,
    );
  }
  return `sha256:${match[1]!.toLowerCase()}`;
}

/** A certificate with its pin, subject and whether it may act as a CA. */
export interface PinnedCertificate {
  pem: string;
  pin: string;
  subject: string;
  isCa: boolean;
}

/** The pin of each certificate in a PEM bundle (UsageError naming the entry that does not parse). */
async function describeCertificates(pems: string[]): Promise<PinnedCertificate[]> {
  const out: PinnedCertificate[] = [];
  for (const [i, pem] of pems.entries()) {
    const cert = parseCertificate(pem);
    if (typeof cert === "string") throw new UsageError(`Certificate #${i + 1} is ${cert}`);
    const constraints = cert.extensions.find((e) => e.type === "2.5.29.19") as
      | { ca?: boolean }
      | undefined;
    out.push({
      pem,
      pin: await certificatePin(cert),
      subject: cert.subject,
      isCa: constraints?.ca === true,
    });
  }
  return out;
}

/** The pin and subject of each certificate in the PEM file `path` (UsageError when it has none). */
export async function readCertificatePins(path: string): Promise<PinnedCertificate[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`Cannot read ${JSON.stringify(path)}: ${errorMessage(e)}`);
  }
  const pems = splitPemBundle(text);
  if (pems.length === 0) {
    throw new UsageError(
      `No PEM certificate (-----BEGIN CERTIFICATE-----) in ${JSON.stringify(path)}`,
    );
  }
  return await describeCertificates(pems);
}

interface PeerCertificate {
  raw?: Uint8Array;
  fingerprint256?: string;
  issuerCertificate?: PeerCertificate;
}

/**
 * The certificate chain `host:port` presents, leaf first, read WITHOUT verifying it (nothing is
 * sent but the TLS handshake). Callers must trust it only after matching a pin.
 */
/** An HTTP proxy to tunnel through (CONNECT), with its `Proxy-Authorization` value if any. */
export interface ChainTunnel {
  host: string;
  port: number;
  authorization?: string;
}

/** Opens a CONNECT tunnel to `target` through `tunnel` (the socket is handed to TLS). */
function openTunnel(tunnel: ChainTunnel, target: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: tunnel.host, port: tunnel.port });
    let head = "";
    const onData = (chunk: Uint8Array) => {
      head += new TextDecoder().decode(chunk);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > 16384) socket.destroy(new Error("proxy answer too long"));
        return;
      }
      socket.off("data", onData);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1];
      if (status !== "200") {
        socket.destroy();
        reject(new Error(`proxy answered CONNECT with ${status ?? "garbage"}`));
        return;
      }
      resolve(socket);
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.once("connect", () => {
      const auth = tunnel.authorization ? `Proxy-Authorization: ${tunnel.authorization}\r\n` : "";
      socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`);
    });
  });
}

/**
 * The certificate chain `host:port` presents (through `tunnel` when given), leaf first, read
 * WITHOUT verifying it (nothing is sent but the TLS handshake). Callers must trust it only after
 * matching a pin, or use it only to describe a failure.
 */
export async function readPresentedChain(
  host: string,
  port: number,
  timeoutMs: number,
  tunnel?: ChainTunnel,
): Promise<string[]> {
  const target = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const fail = (e: Error) =>
    new PlatformError(
      `cannot read the certificates of ${JSON.stringify(target)}: ${e.message}`,
      { kind: "network" },
      { cause: e },
    );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new PlatformError(
            `no TLS handshake with ${JSON.stringify(target)} within ${timeoutMs} ms`,
            { kind: "timeout" },
          ),
        ),
      timeoutMs,
    );
  });
  let raw: Socket | undefined;
  try {
    if (tunnel) {
      raw = await Promise.race([
        openTunnel(tunnel, target).catch((e) => {
          throw fail(e);
        }),
        deadline,
      ]);
    }
    return await Promise.race([handshake(host, port, raw, fail), deadline]);
  } finally {
    clearTimeout(timer);
    raw?.destroy();
  }
}

/**
 * A self-signed certificate whose key was discarded when it was made: the CA list of the
 * unverified handshakes, so that nobody chains to it and no real root store is involved.
 */
const UNVERIFIED_READER_CA = `-----BEGIN CERTIFICATE-----
MIIBvTCCAWOgAwIBAgIUUno/5VX1r7KhdX6MWJh6ZY9YqW0wCgYIKoZIzj0EAwIw
MzExMC8GA1UEAwwob25lY29ubmVjdC1hZ2VudCB1bnZlcmlmaWVkIGNoYWluIHJl
YWRlcjAgFw0yNjEyMDEwMTM4MTZaGA8yMTI2MTEwNzAxMzgxNlowMzExMC8GA1UE
Awwob25lY29ubmVjdC1hZ2VudCB1bnZlcmlmaWVkIGNoYWluIHJlYWRlcjBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABFffoE7reR0yutpyuHHkSMPB7n5LmR32yVld
FeNI0ns5Cyg2D9y/khnWJ/okkAkNYnpR/L/jqr+CjQPPHEbYVJCjUzBRMB0GA1Ud
DgQWBBQ7lnJScbAtEGKyXL0+G/4aewSCmjAfBgNVHSMEGDAWgBQ7lnJScbAtEGKy
XL0+G/4aewSCmjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDv
3Tmg9Fv0Ct7JlSlpv+dBX4NuYgwTMBwuXMV1h8u8iQIgIbV6lky0aEj8XU3cIYGr
yNv3bXUoYh4MOepIybf3VtQ=
-----END CERTIFICATE-----
`;

function handshake(
  host: string,
  port: number,
  raw: Socket | undefined,
  fail: (e: Error) => PlatformError,
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    // An explicit `ca` keeps node:tls off Deno's process root store (it would build it, or fail
    // every handshake when the agent left it empty); nothing is verified either way.
    const socket = connect({
      ...(raw ? { socket: raw } : { host, port }),
      ca: [UNVERIFIED_READER_CA],
      rejectUnauthorized: false,
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
    });
    socket.once("secureConnect", () => {
      const chain: string[] = [];
      const seen = new Set<string>();
      let cert = socket.getPeerCertificate(true) as unknown as PeerCertificate | undefined;
      while (cert?.raw && !seen.has(cert.fingerprint256 ?? "")) {
        seen.add(cert.fingerprint256 ?? "");
        chain.push(toPem(new Uint8Array(cert.raw), "CERTIFICATE"));
        cert = cert.issuerCertificate;
      }
      socket.destroy();
      resolve(chain);
    });
    socket.once("error", (e: Error) => {
      socket.destroy();
      reject(fail(e));
    });
  });
}

/**
 * Keeps the CA certificates of `chain` whose key matches one of `pins`; throws a `tls`
 * {@linkcode PlatformError} listing every pin it saw when none matches.
 */
export async function matchPinnedCas(
  chain: string[],
  pins: string[],
  target: string,
): Promise<PinnedCertificate[]> {
  const described = await describeCertificates(chain);
  const matched = described.filter((c) => c.isCa && pins.includes(c.pin));
  if (matched.length > 0) return matched;
  const seen = described.map((c) => `${c.pin} (${JSON.stringify(c.subject)})`).join(", ");
  throw new PlatformError(
    `no CA certificate presented by ${JSON.stringify(target)} matches --ca-pin ${
      pins.join(",")
    }; it presented ${
      seen || "no certificate"
    }; nothing else was sent: check the pin, or whether a TLS-inspecting proxy is in the path`,
    { kind: "tls" },
  );
}
