/**
 * `oneconnect-agent diagnostics [--output FILE|-] [--no-network]`: writes the support bundle
 * (src/diagnostics/bundle.ts), mode 0600, created exclusively, and prints its path.
 */
import type { ConfigFlags } from "../config/config.ts";
import type { CommandContext } from "../config/context.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { createLogger } from "../log.ts";
import {
  archiveBundle,
  archiveFormat,
  bundleBaseName,
  collectBundle,
} from "../diagnostics/bundle.ts";
import { safeMessage, withheldConfigValues } from "../diagnostics/sanitize.ts";

/** Flags of `diagnostics`. */
export interface DiagnosticsOptions {
  /** `--output`: a path, `-` for stdout, or undefined for the default name in the working dir. */
  output?: string;
  /** False with `--no-network`. */
  network: boolean;
}

/** Creates `path` exclusively with mode 0600 and writes `bytes` to it. */
async function writeExclusive(path: string, bytes: Uint8Array): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new UsageError(
        `Cannot write diagnostics bundle ${
          JSON.stringify(path)
        }: it already exists; remove it or choose another --output`,
      );
    }
    throw new UsageError(
      `Cannot write diagnostics bundle ${JSON.stringify(path)}: ${errorMessage(e)}`,
    );
  }
  try {
    // The umask may have narrowed the mode, never widened it; make it exactly 0600.
    if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
    let at = 0;
    while (at < bytes.length) at += await file.write(bytes.subarray(at));
  } finally {
    file.close();
  }
}

/** Builds the bundle and writes it where `options.output` says. */
export async function diagnosticsCommand(
  context: (extra?: ConfigFlags) => Promise<CommandContext>,
  options: DiagnosticsOptions,
): Promise<void> {
  if (options.output === "-" && Deno.stdout.isTerminal()) {
    throw new UsageError(
      "Refusing to write the diagnostics archive to a terminal (--output -): redirect stdout to a file or pass --output <file>",
    );
  }
  let ctx: CommandContext;
  let configProblem: string | undefined;
  try {
    ctx = await context();
  } catch (e) {
    // A bundle is most wanted when the configuration is broken: report on the rest without it.
    if (!(e instanceof UsageError)) throw e;
    ctx = await context({ ignoreFileConfig: true });
    configProblem = withheldConfigValues(safeMessage(e.message));
  }
  const lines: string[] = [];
  const inner = createLogger({ level: "debug", write: (line) => lines.push(line) });
  const bundle = await collectBundle({
    ctx: { ...ctx, logger: inner },
    configProblem,
    network: options.network,
    logLines: () => lines,
  });
  const format = archiveFormat();
  const base = bundleBaseName(bundle.agentId, bundle.createdMs);
  const bytes = await archiveBundle(bundle, format, base);
  const output = options.output ?? `${base}.${format}`;
  if (output === "-") {
    let at = 0;
    while (at < bytes.length) at += await Deno.stdout.write(bytes.subarray(at));
  } else {
    await writeExclusive(output, bytes);
    ctx.stdout(`${output}\n`);
  }
  if (bundle.unreadable.length > 0) {
    ctx.logger.warn(
      `Diagnostics bundle written without: ${
        bundle.unreadable.map((u) => `${u.what} (${u.reason})`).join("; ")
      }; manifest.json lists the same`,
    );
  }
}
