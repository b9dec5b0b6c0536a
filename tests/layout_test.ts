// The shape of src/ (issues 17 and 28): every module has a rank (RANKS, written here and nowhere
// else; docs/development.md shows the same table and a test below keeps them equal), imports go
// down the ranks only, there is no import cycle and no file over MAX_LINES lines without a stated
// reason. The walker is a pure function over file texts, tested below on in-memory graphs; the
// last tests run it over the real src/.
import assert from "node:assert/strict";
import { repoPath } from "./_support/helpers.ts";
import { dirname, join, normalize } from "node:path/posix";
import { sourceFiles } from "./_support/helpers.ts";

/** Files longer than this must state why in a line starting with {@linkcode LONG_FILE_MARKER}. */
export const MAX_LINES = 400;
/** The reason line of a long file; it must be one of its first {@linkcode MARKER_WITHIN} lines. */
export const LONG_FILE_MARKER = "// Longer than 400 lines because";
const MARKER_WITHIN = 5;

/**
 * The ranks of `src/`, bottom first. A unit is a folder (`src/trust/`), one file (`src/cli.ts`), or
 * `src/*.ts`, the one-file helpers at the top of `src/`. A module may import its own unit or a unit
 * of a lower rank; never a higher rank, and never another unit of its own rank (peers stay
 * independent, so either can move). A file in no unit fails the test: rank a new folder here.
 */
export const RANKS: readonly { units: readonly string[]; role: string }[] = [
  { units: ["src/*.ts"], role: "one-file helpers: errors, log, file_system, zod, sha256, ..." },
  {
    units: ["src/wire/"],
    role: "what crosses the wire: contract, telemetry types, URL, body, clock",
  },
  { units: ["src/trust/", "src/proxy/", "src/telemetry/"], role: "TLS trust, proxies, host facts" },
  { units: ["src/state/"], role: "the state directory: identity, status, locks, permissions" },
  { units: ["src/config/"], role: "settings: flags, environment, agent.json, the command context" },
  { units: ["src/platform/"], role: "talking to the platform: client, answers, errors, backoff" },
  { units: ["src/enrollment/"], role: "identity lifecycle: enroll, renew, unenroll, provision" },
  { units: ["src/heartbeat/"], role: "the heartbeat service and its loop" },
  { units: ["src/diagnostics/"], role: "the support bundle" },
  { units: ["src/commands/"], role: "one thin file per command" },
  { units: ["src/cli_parser.ts"], role: "the table-driven argv parser and --help rendering" },
  { units: ["src/cli.ts"], role: "the command tables and the dispatch" },
  { units: ["src/main.ts"], role: "the only Deno.exit: signals, uncaught errors, exit code" },
];

/** The unit of `path` in `ranks` and its rank, or `null` when no unit holds it. */
export function unitOf(
  path: string,
  ranks: typeof RANKS = RANKS,
): { unit: string; rank: number } | null {
  const inRoot = /^src\/[^/]+\.ts$/.test(path);
  let best: { unit: string; rank: number } | null = null;
  ranks.forEach(({ units }, rank) => {
    for (const unit of units) {
      const holds = unit === path || (unit.endsWith("/") && path.startsWith(unit)) ||
        (unit === "src/*.ts" && inRoot);
      // An exact file beats `src/*.ts`.
      if (holds && (best === null || unit === path)) best = { unit, rank };
    }
  });
  return best;
}

/** What {@linkcode layoutViolations} finds. */
export interface Violations {
  /** Each strongly connected component, sorted (a self-importing module is one too). */
  cycles: string[][];
  /** `importer -> imported (rank a -> rank b)` for an import that climbs or crosses to a peer. */
  climbs: string[];
  /** Modules of `src/` that no unit of {@linkcode RANKS} holds. */
  unranked: string[];
  /** Files over {@linkcode MAX_LINES} lines without the reason line (`path (N lines)`). */
  longFiles: string[];
}

/** The relative specifiers of a module's static (`import`/`export ... from`) and dynamic imports. */
export function relativeImports(source: string): string[] {
  // Comments that start a line (JSDoc, `//` notes) may mention imports that are not there.
  const code = source
    .replace(/^\s*\/\*[\s\S]*?\*\//gm, "")
    .replace(/^\s*\/\/.*$/gm, "");
  const patterns = [
    /^\s*(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  const found = new Set<string>();
  for (const re of patterns) {
    for (const m of code.matchAll(re)) {
      if (m[1]!.startsWith("./") || m[1]!.startsWith("../")) found.add(m[1]!);
    }
  }
  return [...found];
}

/** The import graph of `files` (path -> source): each path to the paths it imports. */
export function importGraph(files: ReadonlyMap<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [path, source] of files) {
    graph.set(path, relativeImports(source).map((s) => normalize(join(dirname(path), s))));
  }
  return graph;
}

/** Strongly connected components with a cycle (Tarjan), members sorted, components sorted. */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(component.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return components.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** One concrete cycle through the first module of `component`, as `a -> b -> a` (shortest, BFS). */
export function describeCycle(
  graph: ReadonlyMap<string, readonly string[]>,
  component: readonly string[],
): string {
  const start = component[0]!;
  const inside = new Set(component);
  const parent = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = parent.get(u)!) path.unshift(u);
        path.unshift(start);
        return path.join(" -> ");
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  throw new Error(`no cycle through "${start}"`);
}

/** Every violation of the layout rules among `files` (repository-relative path -> source). */
export function layoutViolations(
  files: ReadonlyMap<string, string>,
  ranks: typeof RANKS = RANKS,
): Violations {
  const graph = importGraph(files);
  const climbs: string[] = [];
  const unranked: string[] = [];
  for (const [from, targets] of graph) {
    const a = unitOf(from, ranks);
    if (a === null) {
      unranked.push(from);
      continue;
    }
    for (const to of targets) {
      const b = unitOf(to, ranks);
      if (b === null || b.unit === a.unit || b.rank < a.rank) continue;
      climbs.push(`${from} -> ${to} (rank ${a.rank} ${a.unit} -> rank ${b.rank} ${b.unit})`);
    }
  }
  const longFiles: string[] = [];
  for (const [path, source] of files) {
    const lines = source.split("\n");
    if (lines.at(-1) === "") lines.pop();
    if (lines.length <= MAX_LINES) continue;
    const stated = lines.slice(0, MARKER_WITHIN).some((l) => l.startsWith(LONG_FILE_MARKER));
    if (!stated) longFiles.push(`${path} (${lines.length} lines)`);
  }
  return {
    cycles: importCycles(graph),
    climbs: climbs.sort(),
    unranked: unranked.sort(),
    longFiles: longFiles.sort(),
  };
}

function report(graph: ReadonlyMap<string, readonly string[]>, v: Violations): string {
  return [
    ...v.cycles.map((c) => `import cycle: ${describeCycle(graph, c)} (component: ${c.join(", ")})`),
    ...v.climbs.map((i) => `import climbs or crosses to a peer: ${i}`),
    ...v.unranked.map((f) => `${f} is in no unit of RANKS (tests/layout_test.ts)`),
    ...v.longFiles.map((f) =>
      `${f} is over ${MAX_LINES} lines without a "${LONG_FILE_MARKER} ..." line at its top`
    ),
  ].join("\n");
}

// --- the walker, on in-memory graphs ---

const mod = (...imports: string[]) => imports.map((s) => `import { x } from "${s}";`).join("\n");

Deno.test("layout walker finds a synthetic import cycle and prints it", () => {
  const files = new Map([
    ["src/a.ts", mod("./b.ts")],
    ["src/b.ts", mod("./deep/c.ts", "./log.ts")],
    ["src/deep/c.ts", `export const c = async () => (await import("../a.ts")).x;`],
    ["src/log.ts", ""],
  ]);
  const found = layoutViolations(files);
  assert.deepEqual(found.cycles, [["src/a.ts", "src/b.ts", "src/deep/c.ts"]]);
  assert.equal(
    describeCycle(importGraph(files), found.cycles[0]!),
    "src/a.ts -> src/b.ts -> src/deep/c.ts -> src/a.ts",
  );
  assert.match(report(importGraph(files), found), /^import cycle: src\/a\.ts -> src\/b\.ts/);
});

Deno.test("layout walker finds a module importing itself and two separate cycles", () => {
  const files = new Map([
    ["src/self.ts", mod("./self.ts")],
    ["src/p.ts", mod("./q.ts")],
    ["src/q.ts", mod("./p.ts")],
    ["src/r.ts", mod("./p.ts")],
  ]);
  const found = layoutViolations(files);
  assert.deepEqual(found.cycles, [["src/p.ts", "src/q.ts"], ["src/self.ts"]]);
  assert.equal(describeCycle(importGraph(files), ["src/self.ts"]), "src/self.ts -> src/self.ts");
});

Deno.test("layout walker passes an acyclic graph with shared imports", () => {
  const files = new Map([
    ["src/main.ts", mod("./cli.ts")],
    ["src/cli.ts", mod("./commands/run.ts", "./log.ts")],
    ["src/commands/run.ts", mod("../heartbeat/loop.ts", "../log.ts", "./shared.ts")],
    ["src/commands/shared.ts", mod("../log.ts")],
    ["src/commands/help.ts", mod("./shared.ts")],
    ["src/cli_parser.ts", mod("./log.ts")],
    ["src/heartbeat/loop.ts", mod("../log.ts")],
    ["src/log.ts", mod("node:os", "npm:zod")],
  ]);
  assert.deepEqual(layoutViolations(files), {
    cycles: [],
    climbs: [],
    unranked: [],
    longFiles: [],
  });
});

Deno.test("layout walker flags an import that climbs a rank or crosses to a peer", () => {
  const files = new Map([
    ["src/cli.ts", mod("./commands/run.ts")],
    ["src/commands/run.ts", mod("../heartbeat/loop.ts", "../trust/pin.ts")],
    ["src/heartbeat/loop.ts", `const { f } = await import("../commands/status.ts");`],
    ["src/commands/status.ts", ""],
    ["src/log.ts", mod("./cli.ts", "./errors.ts")],
    ["src/errors.ts", ""],
    ["src/trust/pin.ts", mod("../proxy/hop.ts", "../wire/contract.ts", "./der.ts")],
    ["src/trust/der.ts", ""],
    ["src/proxy/hop.ts", ""],
    ["src/wire/contract.ts", mod("../state/store.ts")],
    ["src/state/store.ts", ""],
  ]);
  assert.deepEqual(layoutViolations(files).climbs, [
    "src/heartbeat/loop.ts -> src/commands/status.ts (rank 7 src/heartbeat/ -> rank 9 src/commands/)",
    "src/log.ts -> src/cli.ts (rank 0 src/*.ts -> rank 11 src/cli.ts)",
    "src/trust/pin.ts -> src/proxy/hop.ts (rank 2 src/trust/ -> rank 2 src/proxy/)",
    "src/wire/contract.ts -> src/state/store.ts (rank 1 src/wire/ -> rank 3 src/state/)",
  ]);
});

Deno.test("layout walker flags a module in no ranked unit", () => {
  const files = new Map([["src/newfolder/a.ts", mod("../log.ts")], ["src/log.ts", ""]]);
  const found = layoutViolations(files);
  assert.deepEqual(found.unranked, ["src/newfolder/a.ts"]);
  assert.match(report(importGraph(files), found), /src\/newfolder\/a\.ts is in no unit of RANKS/);
  assert.deepEqual(unitOf("src/cli.ts"), { unit: "src/cli.ts", rank: 11 });
  assert.deepEqual(unitOf("src/errors.ts"), { unit: "src/*.ts", rank: 0 });
  assert.equal(unitOf("src/a/b/c.ts")?.unit, undefined);
});

Deno.test("layout walker flags a long file unless a line at its top states why", () => {
  const body = "export const x = 1;\n".repeat(MAX_LINES);
  const files = new Map([
    ["src/fits.ts", body],
    ["src/long.ts", body + "export const y = 2;\n"],
    ["src/reasoned.ts", `// Reason first.\n${LONG_FILE_MARKER} it is a table.\n${body}`],
    ["src/late.ts", `${"//\n".repeat(MARKER_WITHIN)}${LONG_FILE_MARKER} too late.\n${body}`],
  ]);
  assert.deepEqual(layoutViolations(files).longFiles, [
    `src/late.ts (${MAX_LINES + MARKER_WITHIN + 1} lines)`,
    `src/long.ts (${MAX_LINES + 1} lines)`,
  ]);
});

Deno.test("layout walker reads static, re-export, type, side-effect and dynamic imports only", () => {
  const source = [
    `import type { A } from "./a.ts";`,
    `import {`,
    `  b,`,
    `  c,`,
    `} from "../b.ts";`,
    `export { d } from "./d.ts";`,
    `export * from './e.ts';`,
    `import "./f.ts";`,
    `const g = await import( "./g.ts" );`,
    `import * as z from "npm:zod";`,
    `import { join } from "node:path";`,
    `/** Unlike {@linkcode import("./h.ts")}, this is a comment. */`,
    `// import { i } from "./i.ts";`,
    `const s = "from './j.ts'";`,
  ].join("\n");
  assert.deepEqual(relativeImports(source).sort(), [
    "../b.ts",
    "./a.ts",
    "./d.ts",
    "./e.ts",
    "./f.ts",
    "./g.ts",
  ]);
});

// --- the real tree ---

Deno.test("layout of src/: every module ranked, no climbing import, no cycle, no unexplained long file", async () => {
  const root = repoPath();
  const files = new Map<string, string>();
  await sourceFiles(root, "src", files);
  assert.ok(files.size > 20, `found only ${files.size} files under ${join(root, "src")}`);
  const graph = importGraph(files);
  const found = layoutViolations(files);
  const failing = report(graph, found);
  assert.equal(failing, "", `layout violations:\n${failing}`);
});

Deno.test("docs/development.md shows the ranks of RANKS, top first", async () => {
  const text = await Deno.readTextFile(join(repoPath(), "docs", "development.md"));
  const shown = [...text.matchAll(/^rank (\d+) +(.+?)  +(.+)$/gm)].map((m) =>
    `${m[1]} ${m[2]} | ${m[3]}`
  );
  // The picture is drawn top first, as imports flow.
  const expected = RANKS.map((r, i) => `${i} ${r.units.join(" ")} | ${r.role}`).reverse();
  assert.deepEqual(shown, expected, "the ranks picture in docs/development.md differs from RANKS");
});
