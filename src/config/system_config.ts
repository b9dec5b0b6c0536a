/**
 * The system configuration file (`/etc/oneconnect-agent/agent.json`, POSIX): the layer below the
 * state directory's `agent.json` that packages ship as a conffile and `provision` writes. It
 * decides where `enroll` sends the token and what it trusts, so it is audited as the state
 * directory's `agent.json` is (the directories above it and the file: owner, mode, no link) and
 * read without following a symbolic link.
 */
import { readAuditedConfigText } from "./config_file.ts";
import { type OwnershipHost, requireSafeParents } from "../state/ownership.ts";

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
  return await readAuditedConfigText(path, { ownership, posix, maxBytes: MAX_CONFIG_BYTES });
}
