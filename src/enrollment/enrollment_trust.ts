/**
 * The enrollment trust decision: what enrollment (and `enroll --check`) trusts for the platform's
 * server before the agent has an identity: a `--ca-file` bundle, the presented CA certificates
 * matching `--ca-pin`, or the operating system's trust store.
 */
import type { CommandContext } from "../config/context.ts";
import { errorMessage, PlatformError, UsageError } from "../errors.ts";
import type { FileSystem } from "../file_system.ts";
import { parseCertificate, splitPemBundle } from "../trust/certificates.ts";
import { describeTrust, type Trust } from "../trust/trust_source.ts";

/** Seams of {@linkcode enrollmentTrust}. */
export interface EnrollmentTrustDeps {
  fs: FileSystem;
  /** The CA certificates matching `pins` among those the platform presents (see ca_pin.ts). */
  pinnedCas: (baseUrl: URL, pins: string[], timeoutMs: number) => Promise<string[]>;
}

/** Reads the chain `baseUrl` presents (direct, unverified) and keeps the CAs matching a pin. */
export async function readPinnedCas(
  baseUrl: URL,
  pins: string[],
  timeoutMs: number,
): Promise<string[]> {
  const { matchPinnedCas, readPresentedChain } = await import("../trust/ca_pin.ts");
  const host = baseUrl.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(baseUrl.port || 443);
  const chain = await readPresentedChain(host, port, timeoutMs);
  const matched = await matchPinnedCas(chain, pins, `${baseUrl.hostname}:${port}`);
  return matched.map((c) => c.pem);
}

/** Reads a `--ca-file` bundle: at least one certificate, each one parsable (else UsageError). */
export async function readBootstrapCa(fs: FileSystem, path: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readTextFile(path);
  } catch (e) {
    throw new UsageError(`Cannot read CA file ${JSON.stringify(path)}: ${errorMessage(e)}`);
  }
  const pems = splitPemBundle(text);
  if (pems.length === 0) {
    throw new UsageError(
      `Invalid CA file ${JSON.stringify(path)}: no PEM certificate (-----BEGIN CERTIFICATE-----)`,
    );
  }
  for (const [i, pem] of pems.entries()) {
    const parsed = parseCertificate(pem);
    if (typeof parsed === "string") {
      throw new UsageError(
        `Invalid CA file ${JSON.stringify(path)}: certificate #${i + 1} is ${parsed}`,
      );
    }
  }
  return pems;
}

/**
 * What enrollment trusts for the platform's server: the `--ca-file` bundle, the presented CA
 * certificates matching `caPins` (read before anything is sent), or the OS trust store.
 */
export async function enrollmentTrust(
  ctx: CommandContext,
  caPins: string[] | undefined,
  deps: EnrollmentTrustDeps,
  baseUrl: URL,
): Promise<{ trust: Trust; cas: string[] | undefined }> {
  const { config, logger } = ctx;
  const rawPins = (caPins ?? []).filter((p) => p.trim() !== "");
  if (config.caFile !== undefined) {
    if (rawPins.length > 0) {
      throw new UsageError("Cannot enroll: pass --ca-file or --ca-pin, not both");
    }
    return { trust: { source: "ca_file" }, cas: await readBootstrapCa(deps.fs, config.caFile) };
  }
  if (rawPins.length > 0) {
    const { parseCaPin } = await import("../trust/ca_pin.ts");
    const pins = [...new Set(rawPins.map((p) => parseCaPin(p)))];
    if (baseUrl.protocol !== "https:") {
      throw new UsageError("Cannot enroll: --ca-pin needs an https:// platform URL");
    }
    const { proxyForUrl } = await import("../proxy/proxy_select.ts");
    if (
      config.proxyPac !== undefined || proxyForUrl(baseUrl, ctx.env, config.proxyUrl) !== undefined
    ) {
      throw new UsageError(
        "Cannot enroll: --ca-pin reads the platform's certificates over a direct connection, and a proxy is configured; pass --ca-file with the platform's CA instead",
      );
    }
    let cas: string[];
    try {
      cas = await deps.pinnedCas(baseUrl, pins, config.timeoutSeconds * 1000);
    } catch (e) {
      if (!(e instanceof PlatformError)) throw e;
      throw new PlatformError(`Cannot enroll: ${e.message}`, e, { cause: e });
    }
    return { trust: { source: "ca_pin", ca_pins: pins }, cas };
  }
  const trust: Trust = { source: "system" };
  logger.warn(
    `Trusting ${
      describeTrust(trust)
    } for the platform's server (no --ca-file or --ca-pin); pin the platform's CA with --ca-pin to trust only it`,
  );
  return { trust, cas: undefined };
}
