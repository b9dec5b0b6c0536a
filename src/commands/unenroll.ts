import type { CommandContext } from "../config/context.ts";
import { unenroll, type UnenrollDeps, type UnenrollOptions } from "../enrollment/unenroll.ts";
import { NotEnrolledError } from "../errors.ts";
import { rootIdentityHint } from "../state/root_identity.ts";

/**
 * `oneconnect-agent unenroll`: the platform's outcome, one `removed <path>` line per removed file,
 * then `unenrolled <agent-id>`; with no identity, `nothing to remove` and success (repeatable),
 * unless root's state directory holds one (then "run as root", exit 5).
 */
export async function unenrollCommand(
  ctx: CommandContext,
  options: UnenrollOptions,
  overrides: Partial<UnenrollDeps> = {},
): Promise<void> {
  const { agentId, removed } = await unenroll(ctx, options, overrides);
  if (removed.length === 0) {
    const hint = await rootIdentityHint(ctx.config.stateDir, "unenroll");
    if (hint !== null) throw new NotEnrolledError(hint);
    ctx.stdout(`nothing to remove: no identity in ${JSON.stringify(ctx.config.stateDir)}\n`);
    return;
  }
  for (const path of removed) ctx.stdout(`removed ${path}\n`);
  ctx.stdout(`unenrolled ${agentId ?? "(unknown agent id)"}\n`);
}
