import type { CommandContext } from "../config/context.ts";
import { CONFIG_FILE_NAME } from "../config/config_file.ts";
import { join } from "../file_system.ts";
import { provision, type ProvisionDeps } from "../enrollment/provisioning.ts";

/**
 * `oneconnect-agent provision`: stores the platform URL, CA and enrollment token an installer was
 * given in the environment for the service; one line per thing stored. Where there is no system
 * configuration file (Windows), the state directory's `agent.json` takes the configuration.
 */
export async function provisionCommand(
  ctx: CommandContext,
  overrides: Partial<ProvisionDeps> = {},
): Promise<void> {
  const configPath = ctx.config.systemConfigFile ?? join(ctx.config.stateDir, CONFIG_FILE_NAME);
  for (const line of await provision(ctx, configPath, overrides)) ctx.stdout(`${line}\n`);
}
