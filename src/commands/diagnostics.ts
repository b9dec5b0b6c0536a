/**
 * `oneconnect-agent diagnostics [--output FILE|-] [--no-network]`: writes the support bundle
 * (src/diagnostics/bundle.ts), mode 0600, created exclusively, and prints its path.
 */
import type { ConfigFlags } from "../config/config.ts";
import type { CommandContext } from "../config/context.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { buildSupportArchive } from "../diagnostics/bundle.ts";

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
  const { ctx, bytes, fileName, unreadable } = await buildSupportArchive(context, options.network);
  const output = options.output ?? fileName;
  if (output === "-") {
    let at = 0;
    while (at < bytes.length) at += await Deno.stdout.write(bytes.subarray(at));
  } else {
    await writeExclusive(output, bytes);
    ctx.stdout(`${output}\n`);
  }
  if (unreadable.length > 0) {
    ctx.logger.warn(
      `Diagnostics bundle written without: ${
        unreadable.map((u) => `${u.what} (${u.reason})`).join("; ")
      }; manifest.json lists the same`,
    );
  }
}
