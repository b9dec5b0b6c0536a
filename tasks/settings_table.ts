/**
 * `deno task settings-table`: writes the settings table of docs/configuration.md, between its
 * markers, from the rows of src/config/settings.ts and the flag tables of src/cli.ts (which
 * commands take each flag). `--check` only compares (exit 1 on a difference);
 * tests/settings_test.ts runs the same comparison.
 *
 * Usage: deno task settings-table [--check]
 *
 * @module
 */
import { COMMANDS, GLOBAL_FLAGS } from "../src/cli.ts";
import { SETTINGS, type SettingSpec } from "../src/config/settings.ts";

/** The page that holds the generated table. */
export const PAGE = "docs/configuration.md";
/** Markers around the generated table in {@linkcode PAGE}. */
export const BEGIN =
  "<!-- settings-table:begin (generated from src/config/settings.ts by deno task settings-table) -->";
/** End marker of the generated table. */
export const END = "<!-- settings-table:end -->";

const code = (text: string) => `\`${text}\``;

/** The flag cell: the commands that take it (none: every command), the flag and its value. */
function flagCell(s: SettingSpec): string {
  if (s.flag === undefined) return "—";
  const name = s.flag.name;
  const value = s.values ? s.values.join("|") : `<${s.flag.value}>`;
  const flag = `--${name} ${value}`;
  const global = GLOBAL_FLAGS.some((f) => f.name === name);
  const commands = global
    ? []
    : COMMANDS.filter((c) => c.flags.some((f) => f.name === name)).map((c) => c.name);
  if (!global && commands.length === 0) throw new Error(`no command takes --${name}`);
  const last = commands.pop();
  const cell = [...commands.map(code), code(last === undefined ? flag : `${last} ${flag}`)]
    .join(", ");
  return `${cell}${s.list ? " (repeatable)" : ""}${s.range ? ` (${s.range.join("..")})` : ""}`;
}

/** The rows of the table: flag, environment, `agent.json`, default; one per setting. */
export function settingsRows(): string[][] {
  return (SETTINGS as readonly SettingSpec[]).map((s) => [
    flagCell(s),
    s.env ? `${code(s.env)}${s.list ? " (comma-separated)" : ""}` : s.docEnv ?? "—",
    s.file
      ? `${code(s.file)}${s.list ? " (array)" : ""}${
        s.range && !s.flag ? ` (${s.range.join("..")})` : ""
      }`
      : "—",
    s.default === undefined
      ? s.docDefault ?? "—"
      : `${code(String(s.default))}${s.docDefault ? ` ${s.docDefault}` : ""}`,
  ]);
}

/** A markdown table as `deno fmt` lays it out (cells padded, `|` escaped). */
export function markdownTable(header: readonly string[], rows: readonly string[][]): string {
  const escaped = [header, ...rows].map((r) => r.map((c) => c.replaceAll("|", "\\|")));
  const widths = header.map((_, i) => Math.max(...escaped.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [
    line(escaped[0]!),
    line(widths.map((w) => "-".repeat(w))),
    ...escaped.slice(1).map(line),
  ].join("\n");
}

/** The generated table. */
export function renderSettingsTable(): string {
  return markdownTable(["flag", "environment", "`agent.json`", "default"], settingsRows());
}

/** `page` with the text between the markers replaced by `table`. */
export function replaceTable(page: string, table: string): string {
  const begin = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (begin < 0 || end < begin) {
    throw new Error(`${PAGE} lacks the markers "${BEGIN}" and "${END}"`);
  }
  return `${page.slice(0, begin + BEGIN.length)}\n\n${table}\n\n${page.slice(end)}`;
}

if (import.meta.main) {
  const path = new URL(`../${PAGE}`, import.meta.url);
  const page = await Deno.readTextFile(path);
  const updated = replaceTable(page, renderSettingsTable());
  if (Deno.args.includes("--check")) {
    if (updated !== page) {
      console.error(`${PAGE}: the settings table differs from src/config/settings.ts`);
      Deno.exit(1);
    }
  } else if (updated !== page) {
    await Deno.writeTextFile(path, updated);
  }
}
