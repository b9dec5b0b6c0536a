/**
 * `agent.json`, the operator's configuration file (in the state directory, and the system one under
 * /etc): its schema, how it is read and audited, and its error messages.
 */
import * as z from "../zod.ts";
import { UsageError } from "../errors.ts";
import {
  type HandleRead,
  join,
  readErrorReason,
  type ReadRefusal,
  readRefusalReason,
  readRegularFile,
} from "../file_system.ts";
import { parseJsonDocument } from "../json_document.ts";
import { didYouMean } from "../nearest_name.ts";
import { fileConfigShape } from "./settings.ts";
import {
  auditConfigFile,
  auditStateDirOwnership,
  denoOwnershipHost,
  type OwnershipHost,
} from "../state/ownership.ts";

/** How {@linkcode readFileConfig} reads and audits the file (seams for tests). */
export interface ConfigFileHost {
  /**
   * Reads `agent.json` through one handle (default: {@linkcode readRegularFile} with the lstat of
   * `ownership`); the audit uses the returned metadata, so what is checked is what is read.
   */
  readConfigFile?: (path: string) => Promise<HandleRead | ReadRefusal>;
  /** Owner and mode checks made before `agent.json` is read (default: the real ones). */
  ownership?: OwnershipHost;
  os?: typeof Deno.build.os;
}

/**
 * `agent.json` (in the state directory, and the system one under /etc): what an operator can set,
 * one key per setting that has one (settings.ts).
 */
export const FileConfigSchema = z.strictObject(fileConfigShape());
/** The parsed contents of `agent.json`. */
export type FileConfig = z.infer<typeof FileConfigSchema>;

/** Name of the configuration file inside the state directory. */
export const CONFIG_FILE_NAME = "agent.json";

/**
 * Formats the first zod issue as `"field" is <value>: <problem>`; an unknown field is named with
 * the nearest of `knownKeys` (a typo's likely intent), and its value is never shown.
 */
function describeZodIssue(
  error: z.core.$ZodError,
  input: unknown,
  knownKeys: readonly string[] = [],
): string {
  const issue = error.issues[0];
  if (!issue) return "invalid value";
  const path = issue.path.map(String).join(".");
  let value: unknown = input;
  for (const key of issue.path) {
    value = value !== null && typeof value === "object"
      ? (value as Record<PropertyKey, unknown>)[key as PropertyKey]
      : undefined;
  }
  if (issue.code === "unrecognized_keys") {
    const keys = (issue as { keys?: string[] }).keys ?? [];
    return `unknown field ${
      keys.map((k) => `${JSON.stringify(k)}${didYouMean(k, knownKeys)}`).join(", ")
    }${path ? ` in "${path}"` : ""}`;
  }
  const shown = value === undefined ? "missing" : `is ${truncate(JSON.stringify(value))}`;
  return `${path ? `"${path}"` : "value"} ${shown}: ${issue.message}`;
}

function truncate(text: string | undefined, max = 60): string {
  if (text === undefined) return "undefined";
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Largest `agent.json` read; a configuration is a few hundred bytes. */
const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * Reads `agent.json` from the state directory; a missing file is an empty layer. It can point
 * `enroll` at another platform, CA or proxy, so it is audited (POSIX): the state directory and its
 * parents as for secrets, and the file itself, through the handle it is read from (a name swapped
 * after a check is never read): not a symlink, a regular file, owned by us or root, and not
 * writable by group or others. On Windows the state directory's ACL covers it.
 */
export async function readFileConfig(
  stateDir: string,
  host: ConfigFileHost,
): Promise<FileConfig> {
  const path = join(stateDir, CONFIG_FILE_NAME);
  const posix = (host.os ?? Deno.build.os) !== "windows";
  const ownership = host.ownership ?? denoOwnershipHost;
  if (posix) await auditStateDirOwnership(stateDir, ownership);
  const text = await readAuditedConfigText(path, {
    ownership,
    posix,
    maxBytes: MAX_CONFIG_BYTES,
    place: "the state directory",
    read: host.readConfigFile,
  });
  return text === undefined ? {} : parseConfigText(path, text);
}

/** Options of {@linkcode readAuditedConfigText}. */
export interface AuditedConfigRead {
  ownership: OwnershipHost;
  /** Owner and mode are audited on POSIX; on Windows the folder's ACL covers the file. */
  posix: boolean;
  maxBytes: number;
  /** Who else may write there, for the "replaced while being read" refusal. */
  place?: string;
  /** Reads through one handle (default: {@linkcode readRegularFile} with `ownership`'s lstat). */
  read?: (path: string) => Promise<HandleRead | ReadRefusal>;
}

/**
 * The text of a configuration file read through one handle and audited on that handle (owner and
 * mode of the file actually read, never of a name checked before); undefined when there is none.
 */
export async function readAuditedConfigText(
  path: string,
  o: AuditedConfigRead,
): Promise<string | undefined> {
  const read = o.read ??
    ((p: string) => readRegularFile(p, o.maxBytes, (q) => o.ownership.lstat(q)));
  let file: HandleRead | ReadRefusal;
  try {
    file = await read(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw new UsageError(
      `Cannot read configuration ${JSON.stringify(path)}: ${await readErrorReason(
        e,
        path,
        (p) => o.ownership.lstat(p),
      )}`,
    );
  }
  if (typeof file === "string") {
    throw new UsageError(
      `Refusing configuration ${JSON.stringify(path)}: ${
        readRefusalReason(file, o.maxBytes, o.place)
      }`,
    );
  }
  if (o.posix) auditConfigFile(path, file.info, o.ownership.uid());
  return file.text;
}

/** Parses the text of an `agent.json` (`path` names it in errors) against FileConfigSchema. */
export function parseConfigText(path: string, text: string): FileConfig {
  const parsed = parseJsonDocument(FileConfigSchema, text);
  if (!parsed.ok && parsed.notJson) {
    throw new UsageError(
      `Invalid configuration ${
        JSON.stringify(path)
      }: not valid JSON (${parsed.syntaxError}); fix or remove the file`,
    );
  }
  if (!parsed.ok) {
    throw new UsageError(
      `Invalid configuration ${JSON.stringify(path)}: ${
        describeZodIssue(parsed.error, parsed.json, Object.keys(FileConfigSchema.shape))
      }`,
    );
  }
  return parsed.data;
}
