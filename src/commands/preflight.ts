import type { CommandContext } from "../config/context.ts";
import { AgentError, ExitCode } from "../errors.ts";
import { formatChecks, preflight, type PreflightOptions } from "../enrollment/preflight.ts";
import type { PreflightNetwork } from "../enrollment/preflight_network.ts";

/**
 * `enroll --check`: prints one line per check and succeeds only when none failed (a warning or a
 * skipped check does not fail). Throws an exit-4 error naming the failed checks.
 */
export async function preflightCommand(
  ctx: CommandContext,
  options: PreflightOptions,
  network?: (health: PreflightNetwork["health"]) => PreflightNetwork,
): Promise<void> {
  const checks = await preflight(ctx, options, network);
  ctx.stdout(formatChecks(checks));
  const failed = checks.filter((c) => c.status === "fail");
  if (failed.length > 0) {
    throw new AgentError(
      `Preflight failed: ${
        failed.map((c) => c.name).join(", ")
      }; nothing was enrolled and no enrollment token was used`,
      ExitCode.unreachable,
    );
  }
}
