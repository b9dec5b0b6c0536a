/**
 * The system configuration file (`/etc/oneconnect-agent/agent.json`, POSIX): the layer below the
 * state directory's `agent.json` that packages ship as a conffile and `provision` writes. It
 * decides where `enroll` sends the token and what it trusts, so it is audited as the state
 * directory's `agent.json` is (the directories above it and the file: owner, mode, no link) and
 * read without following a symbolic link.
 */
import { UsageError } from "./errors.ts";
import { readErrorReason, readRefusalReason, readRegularFile } from "./file_system.ts";
import { auditConfigFile, type OwnershipHost, requireSafeParents } from "./state/ownership.ts";

/** The system configuration file (POSIX); Windows has none (ProgramData is the state dir). */
export const SYSTEM_CONFIG_PATH = "/etc/oneconnect-agent/agent.json";

/** Longest configuration file accepted: a few hundred bytes in practice. */
const MAX_CONFIG_BYTES = 256 * 1024;

/** The audited text of the system configuration file at `path`; undefined when there is none. */
export async function readSystemConfigText(
  path: string,
  ownership: OwnershipHost,
  os: typeof Deno.build.os,
): Promise<string | undefined> {
  const posix = os !== "windows";
  if (posix) await requireSafeParents(path, ownership);
  let read;
  try {
    read = await readRegularFile(path, MAX_CONFIG_BYTES, (p) => ownership.lstat(p));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw new UsageError(
      `Cannot read configuration ${JSON.stringify(path)}: ${await readErrorReason(
        e,
        path,
        (p) => ownership.lstat(p),
      )}`,
    );
  }
  if (typeof read === "string") {
    throw new UsageError(
      `Refusing configuration ${JSON.stringify(path)}: ${
        readRefusalReason(read, MAX_CONFIG_BYTES)
      }`,
    );
  }
  // The owner and mode of the file actually read (its handle), never of a name checked before.
  if (posix) auditConfigFile(path, read.info, ownership.uid());
  return read.text;
}
