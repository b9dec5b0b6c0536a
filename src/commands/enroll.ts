import type { CommandContext } from "../config/context.ts";
import { enroll, type EnrollDeps, type EnrollOptions } from "../enrollment/enroll.ts";

/** Flags of `oneconnect-agent enroll`. */
export interface EnrollCommandOptions extends EnrollOptions {
  /** `--check`: run the preflight checks instead; no token is read. */
  check: boolean;
}

/**
 * `oneconnect-agent enroll`: exchanges a one-time token for this host's identity and prints
 * `enrolled as <agent-id>` (`already enrolled as <agent-id>` when it was, to the same platform);
 * with `--check`, the preflight checks instead.
 */
export async function enrollCommand(
  ctx: CommandContext,
  options: EnrollCommandOptions,
  overrides: Partial<EnrollDeps> = {},
): Promise<void> {
  if (options.check) {
    // Before anything else: the check must not read, let alone spend, the enrollment token.
    const { preflightCommand } = await import("./preflight.ts");
    return await preflightCommand(ctx, {
      timeoutSeconds: options.timeoutSeconds,
      caPins: options.caPins,
    });
  }
  const { identity, already } = await enroll(ctx, options, overrides);
  // `already enrolled as` tells configuration management that nothing changed.
  ctx.stdout(`${already ? "already enrolled" : "enrolled"} as ${identity.agent_id}\n`);
}
