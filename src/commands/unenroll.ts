import type { CommandContext } from "../context.ts";
import { unenroll, type UnenrollDeps, type UnenrollOptions } from "../enrollment/unenroll.ts";

/**
 * `oneconnect-agent unenroll`: the platform's outcome, one `removed <path>` line per removed file,
 * then `unenrolled <agent-id>`.
 */
export async function unenrollCommand(
  ctx: CommandContext,
  options: UnenrollOptions,
  overrides: Partial<UnenrollDeps> = {},
): Promise<void> {
  const { agentId, removed } = await unenroll(ctx, options, overrides);
  for (const path of removed) ctx.stdout(`removed ${path}\n`);
  ctx.stdout(`unenrolled ${agentId ?? "(unknown agent id)"}\n`);
}
