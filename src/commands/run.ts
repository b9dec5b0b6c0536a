/** `oneconnect-agent run`: the heartbeat service (src/heartbeat/service.ts). */
import type { CommandContext } from "../config/context.ts";
import { type HeartbeatServiceOptions, runHeartbeatService } from "../heartbeat/service.ts";

/**
 * `oneconnect-agent run`: loads the identity, refuses a cloned one, and sends heartbeats with one
 * HTTP client for the life of the process until SIGINT/SIGTERM (exit 0), a rejection (exit 3) or,
 * with `--once`, after one attempt (0 ok, 3 rejected, 4 failed).
 */
export async function runCommand(
  ctx: CommandContext,
  options: HeartbeatServiceOptions,
): Promise<void> {
  await runHeartbeatService(ctx, options);
}
