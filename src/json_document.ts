/**
 * Parsing of a JSON document against its zod schema, the one way every file and answer is read.
 *
 * @module
 */
import type * as z from "./zod.ts";

/** The outcome of {@linkcode parseJsonDocument}: the data, or why the text is not a valid document. */
export type JsonDocument<T> =
  | { ok: true; data: T }
  | { ok: false; notJson: true }
  | { ok: false; notJson: false; json: unknown; error: z.core.$ZodError };

/** Parses `text` as JSON and validates it with `schema`, without throwing. */
export function parseJsonDocument<S extends z.ZodMiniType>(
  schema: S,
  text: string,
): JsonDocument<z.infer<S>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, notJson: true };
  }
  const parsed = schema.safeParse(json);
  return parsed.success
    ? { ok: true, data: parsed.data }
    : { ok: false, notJson: false, json, error: parsed.error };
}
