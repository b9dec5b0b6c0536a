import type { ClockOffset } from "../wire/clock_offset.ts";
import type { AuthMode } from "../config/settings.ts";
import type { Identity } from "../state/identity_store.ts";
import type { Logger } from "../log.ts";
import type { CommandContext } from "../config/context.ts";
import { PlatformClient } from "./client.ts";
import { rootStoreOf, trustOf } from "../trust/trust_source.ts";

/** What an authenticated client needs besides the identity. */
export interface IdentityClientOptions {
  auth: AuthMode;
  proxyUrl?: URL;
  proxyPac?: string;
  /** Measures the platform's clock from its answers (shared by every client of a process). */
  clock?: ClockOffset;
  env: (name: string) => string | undefined;
  timeoutMs: number;
  logger: Logger;
}

/** What every platform client of a command shares: proxy, PAC, environment, timeout, logger. */
export type CommandClientOptions = Omit<IdentityClientOptions, "auth">;

/** The options every platform client of a command is built with (the enrollment ones too). */
export function commandClientOptions(
  ctx: CommandContext,
  overrides: Partial<CommandClientOptions> = {},
): CommandClientOptions {
  return {
    proxyUrl: ctx.config.proxyUrl,
    proxyPac: ctx.config.proxyPac,
    env: ctx.env,
    timeoutMs: ctx.config.timeoutSeconds * 1000,
    logger: ctx.logger,
    ...overrides,
  };
}

/** The client options of a command acting as its identity: the above plus its configured auth. */
export function identityClientOptions(
  ctx: CommandContext,
  overrides: Partial<IdentityClientOptions> = {},
): IdentityClientOptions {
  return { auth: ctx.config.auth, ...commandClientOptions(ctx), ...overrides };
}

/**
 * A {@linkcode PlatformClient} acting as `identity`: its platform URL, what enrollment trusted
 * (the `--ca-file` bundle, the CAs matching `--ca-pin`, or a root store) plus the platform's CAs,
 * and its certificate or its bearer token.
 */
export function clientForIdentity(
  identity: Identity,
  options: IdentityClientOptions,
): PlatformClient {
  const pinned = [...identity.ca_certificates, ...identity.bootstrap_ca_certificates];
  return new PlatformClient({
    baseUrl: new URL(identity.platform_url),
    caCertificates: pinned.length > 0 ? pinned : undefined,
    rootStore: rootStoreOf(trustOf(identity)),
    auth: options.auth === "mtls"
      ? {
        kind: "mtls",
        // The intermediates go with the leaf, so an edge trusting only the root can build the path.
        certificatePem: [identity.certificate, ...identity.intermediate_certificates ?? []].join(
          "",
        ),
        privateKeyPem: identity.private_key,
      }
      : { kind: "bearer", token: identity.service_account_token },
    proxyUrl: options.proxyUrl,
    proxyPac: options.proxyPac,
    clock: options.clock,
    env: options.env,
    timeoutMs: options.timeoutMs,
    logger: options.logger,
  });
}
