/**
 * Finding and reading the bootstrap enrollment token. There is deliberately no flag taking the
 * token itself (argv is visible to every user).
 */
import type { CommandContext } from "../config/context.ts";
import { ENV_VARS } from "../config/config.ts";
import { errorMessage, UsageError } from "../errors.ts";
import { type FileSystem, type HandleRead, lstatOrNull, type ReadRefusal } from "../file_system.ts";
import { readCapped } from "../wire/body_reader.ts";
import { type Logger, registerSecret } from "../log.ts";
import { ENROLLMENT_TOKEN_FILE_NAME, type IdentityStore } from "../state/identity_store.ts";

/** Longest token file or stdin accepted; a token is short, anything bigger is a mistake. */
const MAX_TOKEN_BYTES = 64 * 1024;

/** Where the enrollment token came from, for messages and for deleting the file afterwards. */
export interface TokenSource {
  token: string;
  /** How to name the source in messages. */
  label: string;
  /** The file to delete after a successful enrollment, if any. */
  file?: string;
}

async function readStdin(stream: ReadableStream<Uint8Array>): Promise<string> {
  const bytes = await readCapped(stream, MAX_TOKEN_BYTES);
  if (bytes === undefined) {
    throw new UsageError(
      `Enrollment token from standard input is larger than ${MAX_TOKEN_BYTES} bytes`,
    );
  }
  return new TextDecoder().decode(bytes);
}

async function readTokenFile(fs: FileSystem, path: string, label: string): Promise<string> {
  let read: HandleRead | ReadRefusal;
  try {
    // One handle: a name swapped for a link after a check is never read.
    read = await fs.readRegularFile(path, MAX_TOKEN_BYTES);
  } catch (e) {
    throw new UsageError(`Cannot read enrollment token ${label}: ${errorMessage(e)}`);
  }
  switch (read) {
    case "symlink":
      throw new UsageError(
        `Refusing to read enrollment token ${label}: it is a symbolic link; pass the real file`,
      );
    case "other":
      throw new UsageError(`Refusing to read enrollment token ${label}: it is not a regular file`);
    case "replaced":
      throw new UsageError(
        `Refusing to read enrollment token ${label}: it was replaced while being read; check who else can write its directory`,
      );
    case "too-large":
      throw new UsageError(
        `Enrollment token ${label} is larger than ${MAX_TOKEN_BYTES} bytes: not a token file`,
      );
  }
  return read.text;
}

/**
 * Finds the enrollment token, first found wins: `tokenFile` (`--token-file`, `-` = stdin), the
 * environment, `<state-dir>/enrollment.token`. The token is registered for redaction and trimmed.
 */
export async function resolveToken(
  ctx: CommandContext,
  tokenFile: string | undefined,
  store: IdentityStore,
  fs: FileSystem,
): Promise<TokenSource> {
  const envName = ENV_VARS.enrollmentToken;
  let source: TokenSource | undefined;
  if (tokenFile === "-") {
    source = { token: await readStdin(ctx.stdin()), label: "from standard input" };
  } else if (tokenFile !== undefined) {
    const label = `file ${JSON.stringify(tokenFile)} (--token-file)`;
    source = { token: await readTokenFile(fs, tokenFile, label), label, file: tokenFile };
  } else {
    const env = ctx.env(envName);
    if (env !== undefined) {
      source = { token: env, label: `from ${envName}` };
    } else {
      const path = store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME);
      if ((await lstatOrNull(fs, path)) !== null) {
        const label = `file ${JSON.stringify(path)}`;
        source = { token: await readTokenFile(fs, path, label), label, file: path };
      }
    }
  }
  if (source === undefined) {
    throw new UsageError(
      `No enrollment token found; pass --token-file <path> (- for stdin), set ${envName}, or put it in ${
        JSON.stringify(store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME))
      }`,
    );
  }
  registerSecret(source.token);
  source.token = source.token.trim();
  if (source.token === "") throw new UsageError(`Enrollment token ${source.label} is empty`);
  return source;
}

/** Deletes the used token file; a failure only warns (the identity is already stored). */
export async function deleteTokenFile(
  fs: FileSystem,
  path: string,
  logger: Logger,
): Promise<void> {
  try {
    await fs.remove(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    logger.warn(
      `Could not delete the used enrollment token file ${
        JSON.stringify(path)
      }; delete it yourself (${errorMessage(e)})`,
      { path },
    );
  }
}
