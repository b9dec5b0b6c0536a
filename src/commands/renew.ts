/** `oneconnect-agent renew`: one certificate renewal now, whatever the schedule. */
import type { CommandContext } from "../config/context.ts";
import { renewNow, type RenewNowDeps } from "../enrollment/renew_now.ts";

/**
 * `oneconnect-agent renew`: one renewal now, whatever the schedule. Exit 0 when the new identity is
 * stored, 3 when the platform no longer accepts the agent, 4 when it failed otherwise (the old
 * identity is then untouched).
 */
export async function renewCommand(
  ctx: CommandContext,
  overrides: Partial<RenewNowDeps> = {},
): Promise<void> {
  const renewed = await renewNow(ctx, overrides);
  ctx.stdout(
    `renewed the certificate of ${renewed.agent_id}; valid until ${renewed.certificate_not_after}\n`,
  );
}
