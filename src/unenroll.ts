import type { CommandContext } from "./context.ts";
import { NotEnrolledError, UsageError } from "./errors.ts";
import { denoFileSystem, type FileSystem } from "./file_system.ts";
import { IdentityStore, type IdentityStoreOptions } from "./identity_store.ts";

/** Flags of `oneconnect-agent unenroll`. */
export interface UnenrollOptions {
  /** Do not ask for confirmation. */
  yes: boolean;
  /** Do not contact the platform. */
  localOnly: boolean;
}

/** Seams of {@linkcode unenrollCommand}. */
export interface UnenrollDeps {
  fs: FileSystem;
  store: Pick<IdentityStoreOptions, "os" | "runCommand">;
  /** Shows the confirmation question (no newline) on the terminal. */
  writePrompt: (text: string) => void;
}

const encoder = new TextEncoder();

const defaultDeps: UnenrollDeps = {
  fs: denoFileSystem,
  store: {},
  writePrompt: (text) => {
    const bytes = encoder.encode(text);
    let written = 0;
    while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
  },
};

/** Reads one line from `stream` (without its line ending), or `null` at end of input. */
async function readLine(stream: ReadableStream<Uint8Array>): Promise<string | null> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return text === "" ? null : text;
      text += decoder.decode(value, { stream: true });
      const newline = text.indexOf("\n");
      if (newline >= 0) return text.slice(0, newline).replace(/\r$/, "");
      if (text.length > 1024) return text;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * `oneconnect-agent unenroll`: removes the local identity and its heartbeat status. Asks first on
 * a terminal; elsewhere `--yes` is required, since nobody could answer.
 */
export async function unenrollCommand(
  ctx: CommandContext,
  options: UnenrollOptions,
  overrides: Partial<UnenrollDeps> = {},
): Promise<void> {
  const deps: UnenrollDeps = { ...defaultDeps, ...overrides };
  const store = new IdentityStore(ctx.config.stateDir, {
    fs: deps.fs,
    logger: ctx.logger,
    ...deps.store,
  });
  if (!(await store.exists())) {
    throw new NotEnrolledError(
      `Not enrolled: no identity at ${JSON.stringify(store.identityPath)}; nothing to remove`,
    );
  }
  // The agent id makes the question and the result concrete; a damaged file is removed all the same.
  let agentId: string | undefined;
  try {
    agentId = (await store.load()).agent_id;
  } catch (e) {
    ctx.logger.warn("The identity file cannot be loaded; removing it anyway", {
      path: store.identityPath,
      error: (e as Error).message,
    });
  }
  const who = agentId === undefined ? "this agent" : `agent ${JSON.stringify(agentId)}`;

  if (!options.yes) {
    if (!ctx.stdinIsTerminal()) {
      throw new UsageError(
        "Refusing to unenroll without confirmation: standard input is not a terminal; pass --yes",
      );
    }
    deps.writePrompt(
      `Remove the identity of ${who} from ${JSON.stringify(store.stateDir)}? [y/N] `,
    );
    const answer = (await readLine(ctx.stdin()))?.trim().toLowerCase();
    if (answer !== "y" && answer !== "yes") {
      throw new UsageError("Unenroll cancelled: nothing was removed");
    }
  }

  const removed = await store.remove();
  for (const path of removed) ctx.stdout(`removed ${path}\n`);
  ctx.logger.info(`Removed the local identity of ${who}`, { agent_id: agentId, removed });
  ctx.stdout(`unenrolled ${agentId ?? "(unknown agent id)"}\n`);
}
