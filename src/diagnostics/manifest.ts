/**
 * The bundle's entries and its `manifest.json`: each entry says where it came from and why it
 * carries no secret; what could not be read is listed, never guessed at.
 *
 * @module
 */
import { isoTime } from "../iso_time.ts";
import { VERSION } from "../version.ts";

/** One file of the bundle, built by a collector from fields it names. */
export interface DiagnosticEntry {
  /** File name inside the bundle's folder. */
  name: string;
  /** Where the content came from. */
  source: string;
  /** Why it holds no secret. */
  noSecret: string;
  /** JSON content (pretty-printed), or text as is. */
  content: unknown;
}

/** Something a collector could not read, and why (a message already made safe). */
export interface Unreadable {
  what: string;
  reason: string;
}

/** The serialised bytes of an entry. */
export function entryText(entry: DiagnosticEntry): string {
  return typeof entry.content === "string"
    ? entry.content
    : `${JSON.stringify(entry.content, null, 2)}\n`;
}

/** The `manifest.json` entry describing `entries` and `unreadable`. */
export function manifestEntry(
  entries: readonly DiagnosticEntry[],
  unreadable: readonly Unreadable[],
  facts: { createdMs: number; network: boolean; durationMs: number },
): DiagnosticEntry {
  return {
    name: "manifest.json",
    source: "this command",
    noSecret: "lists names, sources and reasons written by the agent's own code",
    content: {
      format: 1,
      agent_version: VERSION,
      created_at: isoTime(facts.createdMs),
      network_checks: facts.network,
      collected_in_ms: Math.round(facts.durationMs),
      principle:
        "allowlist: every entry is built from fields the agent names; nothing read from a secret file (identity.json's key and token, enrollment.token) is copied",
      entries: [
        {
          name: "manifest.json",
          source: "this command",
          why_no_secret: "lists names, sources and reasons written by the agent's own code",
        },
        ...entries.map((e) => ({ name: e.name, source: e.source, why_no_secret: e.noSecret })),
      ],
      could_not_read: unreadable,
    },
  };
}
