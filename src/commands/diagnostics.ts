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

/**
 * Creates `path` exclusively and writes `bytes` to it, mode exactly 0600 whatever the umask:
 * Deno sets the mode on the open handle (fchmod). Never a chmod by name: `diagnostics` runs as
 * root, often into a directory others can write, where the name could be swapped for a symbolic
 * link to any file between two calls (issue 27 #1).
 */
async function writeExclusive(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await Deno.writeFile(path, bytes, { createNew: true, mode: 0o600 });
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
