/** The bench's figures, their targets, and the printed table. */

/** One row of the results table. */
export interface Figure {
  id: string;
  figure: string;
  /** The measured value, in `unit`; null when it could not be measured. */
  measured: number | null;
  unit: string;
  /** Human-readable target, e.g. "≤ 1.15 × floor"; "info" when the issue sets none. */
  target: string;
  /** null for informational rows (no target) and for unmeasured ones. */
  pass: boolean | null;
  /** Whether the figure is judged against its target (an unmeasured judged figure fails). */
  judged: boolean;
  note?: string;
}

/** A judged figure: passes when `measured` satisfies `ok`. */
export function judged(
  base: Omit<Figure, "pass" | "judged">,
  ok: (measured: number) => boolean,
): Figure {
  return { ...base, judged: true, pass: base.measured === null ? null : ok(base.measured) };
}

/** True when every judged figure was measured and passed: unmeasured is a failure. */
export function allJudgedPass(figures: readonly Figure[]): boolean {
  return figures.every((f) => !f.judged || f.pass === true);
}

/** An informational figure. */
export function info(
  base: Omit<Figure, "pass" | "target" | "judged"> & { target?: string },
): Figure {
  return { ...base, target: base.target ?? "info", pass: null, judged: false };
}

function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(abs >= 1 ? 2 : 3);
}

/** `measured` with its unit, as shown in the table. */
export function formatMeasured(f: Figure): string {
  if (f.measured === null) return "n/a";
  const unit = f.unit === "" ? "" : f.unit === "%" || f.unit === "×" ? f.unit : ` ${f.unit}`;
  return `${formatNumber(f.measured)}${unit}`;
}

/** A Markdown table: figure | measured | target | pass/fail. */
export function renderTable(figures: readonly Figure[]): string {
  const rows = figures.map((f) => [
    f.figure,
    formatMeasured(f),
    f.target,
    f.judged
      ? (f.pass === null ? "FAIL (not measured)" : f.pass ? "pass" : "FAIL")
      : (f.measured === null ? "not measured" : "—"),
  ]);
  const header = ["figure", "measured", "target", "pass/fail"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.map(line),
  ].join("\n");
}
