import type { CommandContext } from "../config/context.ts";
import { errorMessage, InterruptedError, PlatformError, UsageError } from "../errors.ts";
import { isCredentialRejection } from "../wire/contract.ts";
import { denoFileSystem, type FileSystem, writeAllSync } from "../file_system.ts";
import { clientForIdentity, identityClientOptions } from "../platform/identity_client.ts";
import {
  type Identity,
  IdentityStore,
  type IdentityStoreOptions,
} from "../state/identity_store.ts";
import { openIdentityForWriting } from "../state/writable_identity.ts";

/** Bound of the best-effort `DELETE api/v1/agents/{id}`, in seconds. */
const UNENROLL_TIMEOUT_SECONDS = 10;

/** The platform call unenroll makes (the PlatformClient, or a fake in unit tests). */
export interface UnenrollClient {
  unenroll(agentId: string, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** What `oneconnect-agent unenroll` asks of {@linkcode unenroll}. */
export interface UnenrollOptions {
  /** Do not ask for confirmation. */
  yes: boolean;
  /** Do not contact the platform. */
  localOnly: boolean;
}

/** Seams of {@linkcode unenroll}. */
export interface UnenrollDeps {
  fs: FileSystem;
  store: Pick<IdentityStoreOptions, "os" | "runCommand">;
  /** Shows the confirmation question (no newline) on the terminal. */
  writePrompt: (text: string) => void;
  /** Builds the client that asks the platform to forget `identity`. */
  createClient: (identity: Identity, ctx: CommandContext, timeoutMs: number) => UnenrollClient;
  /** This host's machine id now, for the clone guard (null when it has none). */
  machineId: () => Promise<string | null>;
}

const defaultDeps: UnenrollDeps = {
  fs: denoFileSystem,
  store: {},
  writePrompt: (text) => writeAllSync(Deno.stderr, text),
  createClient: (identity, ctx, timeoutMs) =>
    clientForIdentity(identity, identityClientOptions(ctx, { timeoutMs })),
  machineId: async () => {
    const { TelemetryCollector } = await import("../telemetry/collector.ts");
    return (await new TelemetryCollector().host()).machine_id;
  },
};

/**
 * Asks the platform to forget the agent (best effort, bounded) and returns the outcome as one
 * line for stdout. Only an interruption throws: then nothing is removed.
 */
async function forgetOnPlatform(
  ctx: CommandContext,
  identity: Identity,
  deps: UnenrollDeps,
): Promise<string> {
  const who = `agent ${JSON.stringify(identity.agent_id)}`;
  const timeoutMs = Math.min(UNENROLL_TIMEOUT_SECONDS, ctx.config.timeoutSeconds) * 1000;
  let client: UnenrollClient | undefined;
  try {
    client = deps.createClient(identity, ctx, timeoutMs);
    await client.unenroll(identity.agent_id, ctx.shutdown);
    ctx.logger.info(`The platform deleted ${who}`);
    return `platform: deleted ${who}`;
  } catch (e) {
    if (ctx.shutdown.aborted) {
      throw new InterruptedError(
        "Cannot unenroll: interrupted; nothing was removed",
        ctx.shutdown.reason,
        {
          cause: e,
        },
      );
    }
    const message = errorMessage(e);
    // Only the platform's own rejection says the agent is gone; an edge's page says nothing.
    const gone = e instanceof PlatformError && isCredentialRejection(e) &&
      e.code !== "agent_mismatch";
    if (gone) {
      ctx.logger.info(`The platform no longer knows ${who}`, { error: message });
      return `platform: ${who} is already gone (${message})`;
    }
    ctx.logger.warn(
      `Cannot unenroll on the platform: ${message}; removing the local identity anyway`,
    );
    return `platform: cannot unenroll there (${message}); ask an administrator to delete ${who}`;
  } finally {
    client?.close();
  }
}

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

/** The outcome of {@linkcode unenroll}; nothing removed means there was no identity. */
export interface Unenrolled {
  /** The agent id, when the identity file could be loaded. */
  agentId: string | undefined;
  /** The paths that were removed. */
  removed: string[];
}

/**
 * Asks the platform to forget the agent (`DELETE api/v1/agents/{id}`, best effort, skipped with
 * `localOnly`), then removes the local identity and its heartbeat status. Asks first on a
 * terminal; elsewhere `yes` is required, since nobody could answer. The platform's outcome is
 * written to stdout before anything is removed, so it is shown even if the removal fails.
 */
export async function unenroll(
  ctx: CommandContext,
  options: UnenrollOptions,
  overrides: Partial<UnenrollDeps> = {},
): Promise<Unenrolled> {
  const deps: UnenrollDeps = { ...defaultDeps, ...overrides };
  const store = new IdentityStore(ctx.config.stateDir, {
    fs: deps.fs,
    logger: ctx.logger,
    ...deps.store,
  });
  // Repeatable: nothing to remove is success (the command says so; no confirmation needed).
  if (!(await store.exists())) return { agentId: undefined, removed: [] };
  // The agent id makes the question and the result concrete; a damaged file is removed all the same.
  // A clone must not make the platform forget the original host's agent; its copy goes.
  await using opened = await openIdentityForWriting(store, {
    command: "unenroll",
    action: "Cannot unenroll",
    logger: ctx.logger,
    audit: false,
    load: "tolerant",
    cloneGuard: options.localOnly ? undefined : { verb: "unenroll", machineId: deps.machineId },
  });
  const identity = opened.identity;
  if (opened.loadError !== undefined) {
    ctx.logger.warn("The identity file cannot be loaded; removing it anyway", {
      path: store.identityPath,
      error: errorMessage(opened.loadError),
    });
  }
  const agentId = identity?.agent_id;
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

  if (options.localOnly) {
    ctx.stdout("platform: not contacted (--local-only)\n");
  } else if (identity === undefined) {
    ctx.stdout("platform: not contacted (the identity file cannot be loaded)\n");
  } else if (opened.cloned !== null) {
    ctx.stdout(
      "platform: not contacted (this identity was enrolled on another host, cloned image?; only the local copy is removed)\n",
    );
  } else {
    ctx.stdout(`${await forgetOnPlatform(ctx, identity, deps)}\n`);
  }
  const removed = await store.remove();
  ctx.logger.info(`Removed the local identity of ${who}`, { agent_id: agentId, removed });
  return { agentId, removed };
}
