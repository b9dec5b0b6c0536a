/**
 * Parsing of a JSON document against its zod schema, the one way every file and answer is read.
 *
 * @module
 */
import type * as z from "./zod.ts";

/** The outcome of {@linkcode parseJsonDocument}: the data, or why the text is not a valid document. */
export type JsonDocument<T> =
  | { ok: true; data: T }
  | { ok: false; notJson: true; syntaxError: string }
  | { ok: false; notJson: false; json: unknown; error: z.core.$ZodError };

/** Parses `text` as JSON and validates it with `schema`, without throwing. */
export function parseJsonDocument<S extends z.ZodMiniType>(
  schema: S,
  text: string,
): JsonDocument<z.infer<S>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, notJson: true, syntaxError: describeSyntaxError(e, text) };
  }
  const parsed = schema.safeParse(json);
  return parsed.success
    ? { ok: true, data: parsed.data }
    : { ok: false, notJson: false, json, error: parsed.error };
}

/**
 * Where and what the JSON syntax error is, e.g. `line 3 column 1: expected ',' or '}' after
 * property value`, from V8's message but never its excerpt of the text (it may hold a secret).
 */
function describeSyntaxError(error: unknown, text: string): string {
  const message = error instanceof Error ? error.message : String(error);
  const located = /^(.*?) (?:in|(after)) JSON at position (\d+)/.exec(message);
  const token = /^Unexpected token '(.+?)', (\.\.\.)?"/s.exec(message);
  const what = located
    ? `${located[1]}${located[2] ? " after the document" : ""}`
    : token
    ? `unexpected character '${token[1]}'`
    : "";
  let position = located ? Number(located[3]) : undefined;
  if (position === undefined && token?.[2]) {
    // V8 shows 10 characters before the offending one after "...": find them in the text.
    const excerpt = /\.\.\."([\s\S]*?)"(?:\.\.\.)? is not valid JSON$/.exec(message)?.[1];
    const at = excerpt === undefined ? -1 : text.indexOf(excerpt);
    if (at >= 0) position = at + 10;
  }
  if (what === "" && position === undefined) {
    return text.trim() === "" ? "the file is empty" : "unexpected end of the text";
  }
  const reason = (what || "syntax error").replace(/^./, (c) => c.toLowerCase());
  if (position === undefined) return reason;
  const before = text.slice(0, position).split("\n");
  return `line ${before.length} column ${before.at(-1)!.length + 1}: ${reason}`;
}
