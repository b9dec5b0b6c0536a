/**
 * `deno task bench-workarounds`: does each memory workaround still pay? Bundles the agent as it
 * is and, from scratch copies of src/ (never committed), one variant per workaround with the plain
 * library or platform call in its place; enrolls agents on the dev platform and runs them all at
 * once, replicas started interleaved (A1 B1 C1 ... A2 B2 C2 ...), so that the load of a shared
 * machine hits every variant alike. Per variant: steady `run --interval 1` RSS and process CPU per
 * heartbeat (/proc), idle wake-ups between beats of a `run` at the platform's 60 s (for the
 * deadline), then the CLI's start-up (`--help`, `run --once`: wall time and peak RSS), variants
 * alternated ABAB. Side by side in the same run: the agent against a platform that does not
 * advertise `host_digest` (contract 1.0: the full inventory on every beat), a bare Deno process
 * that POSTs on one TLS connection every second, and a sleeping floor. Writes
 * `bench/workarounds.json`; docs/footprint.md ("Workarounds") reads it.
 *
 * Usage: deno task bench-workarounds [--seconds N] [--replicas N] [--only id,id] [--out FILE]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { bundleArgs, ROOT, SOURCE_INPUTS } from "../bundle.ts";
import { startDevPlatform } from "../dev_platform/server.ts";
import { clockTicksPerSecond, ProcSampler, wakeupsBetweenBeats } from "./proc.ts";
import {
  enrollAgent,
  finish,
  FLOOR,
  killAll,
  setAgentEntry,
  spawnScript,
  stop,
} from "./processes.ts";
import { median } from "./stats.ts";

/** One source edit of a variant: `from` must occur exactly once in `file`. */
interface Edit {
  file: string;
  from: string;
  to: string;
}

/** A workaround and the plain call that would replace it. */
interface Variant {
  id: string;
  workaround: string;
  plain: string;
  edits: Edit[];
}

/**
 * The workarounds of issue 28, each undone by the smallest edit that makes the plain call. The
 * TypeScript SHA-256 measured here too (variant `sha256_webcrypto`, bench/workarounds*.json) did not
 * pay and was replaced by WebCrypto's digest.
 */
export const VARIANTS: readonly Variant[] = [
  {
    id: "key_match_webcrypto",
    workaround: "src/trust/key_match.ts",
    plain: "crypto.subtle importKey + exportKey",
    edits: [{
      file: "src/trust/key_match.ts",
      from: "let point = embeddedPublicPoint(keyDer);",
      to: "let point: Uint8Array | null = null;",
    }],
  },
  {
    id: "cli_commander",
    workaround: "src/cli_parser.ts",
    plain: "commander (the same flags parsed by it first)",
    edits: [{
      file: "src/cli.ts",
      from: "export function parseArgv(argv: readonly string[]): Invocation {\n",
      to: "export function parseArgv(argv: readonly string[]): Invocation {\n" +
        "  const quiet = (c: Command) =>\n" +
        "    c.helpOption(false).allowUnknownOption().allowExcessArguments().exitOverride()\n" +
        "      .configureOutput({ writeOut() {}, writeErr() {} });\n" +
        "  const opt = (c: Command, f: FlagSpec) =>\n" +
        '    c.option(`--${f.name}${f.value ? ` <${f.value}>` : ""}`, f.help);\n' +
        "  const program = quiet(new Command(PROGRAM.name));\n" +
        "  for (const f of GLOBAL_FLAGS) opt(program, f);\n" +
        "  for (const spec of COMMANDS) {\n" +
        "    const sub = quiet(program.command(spec.name).description(spec.description));\n" +
        "    for (const f of spec.flags) opt(sub, f);\n" +
        "    sub.action(() => {});\n" +
        "  }\n" +
        '  try {\n    program.parse([...argv], { from: "user" });\n  } catch { /* ours reports */ }\n',
    }, {
      file: "src/cli.ts",
      from: 'import { VERSION } from "./version.ts";\n',
      to: 'import { VERSION } from "./version.ts";\nimport { Command } from "commander";\n',
    }],
  },
  {
    id: "deadline_settimeout",
    workaround: "src/deadline.ts",
    plain: "one setTimeout per deadline, cleared",
    edits: [{
      file: "src/deadline.ts",
      from: "Math.min(left, DEADLINE_TICK_MS)",
      to: "left",
    }],
  },
  {
    id: "no_heap_housekeeping",
    workaround: "src/heartbeat/heap_housekeeping.ts",
    plain: "no forced GC",
    edits: [{
      file: "src/heartbeat/heap_housekeeping.ts",
      from: 'return typeof gc === "function" ? () => gc() : undefined;',
      to: "return gc === gc ? undefined : undefined;",
    }],
  },
  {
    id: "iso_toisostring",
    workaround: "src/iso_time.ts",
    plain: "new Date(ms).toISOString()",
    edits: [{
      file: "src/iso_time.ts",
      from: "  const d = new Date(ms);\n",
      to: "  return new Date(ms).toISOString();\n  const d = new Date(ms);\n",
    }],
  },
];

const BASE = "base";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;
const log = (msg: string) => console.error(`bench-workarounds: ${msg}`);

/** min / median / max, rounded. */
export function spreadOf(values: readonly number[], digits = 2) {
  return {
    min: round(Math.min(...values), digits),
    median: round(median(values), digits),
    max: round(Math.max(...values), digits),
    n: values.length,
  };
}

/** Copies the bundle's inputs into `dir`, applies `edits` and bundles; returns the entry. */
async function bundleVariant(dir: string, edits: readonly Edit[]): Promise<string> {
  for (const input of SOURCE_INPUTS) {
    const cp = await new Deno.Command("cp", { args: ["-r", join(ROOT, input), dir] }).output();
    if (!cp.success) throw new Error(`Cannot copy ${input}`);
  }
  for (const edit of edits) {
    const path = join(dir, edit.file);
    const text = await Deno.readTextFile(path);
    if (text.split(edit.from).length !== 2) {
      throw new Error(`Cannot apply a variant: "${edit.from}" is not once in ${edit.file}`);
    }
    await Deno.writeTextFile(path, text.replace(edit.from, () => edit.to));
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: bundleArgs(join(dir, "bundle")),
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`Cannot bundle a variant: ${new TextDecoder().decode(out.stderr)}`);
  }
  return join(dir, "bundle", "main.js");
}

/** Wall time and peak RSS of one command, by GNU time. */
async function timed(args: string[]): Promise<{ ms: number; peakMiB: number; code: number }> {
  const started = performance.now();
  const child = new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", ...args],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: "/root", NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const out = await child.output();
  const ms = performance.now() - started;
  const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
  return { ms, peakMiB: Number(lines.at(-1)) / 1024, code: out.code };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "720" },
      replicas: { type: "string", default: "3" },
      "startup-runs": { type: "string", default: "8" },
      only: { type: "string" },
      out: { type: "string", default: "bench/workarounds.json" },
    },
    strict: true,
  });
  const seconds = Number(values.seconds);
  const replicas = Number(values.replicas);
  const startupRuns = Number(values["startup-runs"]);
  const only = values.only?.split(",");
  const variants = VARIANTS.filter((v) => only === undefined || only.includes(v.id));
  const ids = [BASE, ...variants.map((v) => v.id)];
  const windowFrom = Math.min(240, seconds / 3);
  const ticksPerSecond = await clockTicksPerSecond();
  const loadAtStart = Deno.loadavg();
  const root = await Deno.makeTempDir({ prefix: "oneconnect-bench-workarounds-" });
  const children: Deno.ChildProcess[] = [];
  await using platform = await startDevPlatform({ quiet: true, heartbeatHistoryLimit: 1_000_000 });
  await using platform10 = await startDevPlatform({
    quiet: true,
    heartbeatHistoryLimit: 1_000_000,
    contractVersion: "1.0",
  });
  try {
    const entries = new Map<string, string>();
    for (const id of ids) {
      const dir = join(root, `src_${id}`);
      await Deno.mkdir(dir);
      entries.set(id, await bundleVariant(dir, variants.find((v) => v.id === id)?.edits ?? []));
    }
    setAgentEntry(entries.get(BASE)!);
    log(`bundled ${ids.length} variants`);

    // Who runs: every variant at 1 s, base and the deadline variant idle at 60 s, base against a
    // contract 1.0 platform, the POST floor and the sleeping floor; replicas interleaved.
    type Role = { key: string; variant: string; args: string[]; contract?: "1.0" };
    const roles: Role[] = [];
    for (let r = 1; r <= replicas; r++) {
      for (const id of ids) {
        roles.push({ key: `${id}#${r}`, variant: id, args: ["--interval", "1"] });
      }
      roles.push({
        key: `${BASE}_v1.0#${r}`,
        variant: BASE,
        args: ["--interval", "1"],
        contract: "1.0",
      });
      for (const id of [BASE, "deadline_settimeout"].filter((i) => ids.includes(i))) {
        roles.push({ key: `${id}_idle#${r}`, variant: id, args: [] });
      }
      roles.push({ key: `post_floor#${r}`, variant: "post_floor", args: [] });
      roles.push({ key: `floor#${r}`, variant: "floor", args: [] });
    }
    const agentIds = new Map<string, { dir: string; id: string }>();
    const agentRoles = roles.filter((r) => !r.variant.includes("floor"));
    for (let i = 0; i < agentRoles.length; i += 2) {
      await Promise.all(
        agentRoles.slice(i, i + 2).map(async (role) => {
          const dir = join(root, role.key.replace(/[#.]/g, "_"));
          const p = role.contract === "1.0" ? platform10 : platform;
          agentIds.set(role.key, { dir, id: await enrollAgent(dir, p) });
        }),
      );
    }
    log(`enrolled ${agentIds.size} agents`);
    // Warm V8's code cache of every bundle once (the first run of a file writes it).
    for (const id of ids) {
      const dir = agentIds.get(`${id}#1`)!.dir;
      const warm = await finish(
        spawnScript(entries.get(id)!, ["--state-dir", dir, "run", "--once"]),
      );
      if (warm.code !== 0) throw new Error(`${id}: run --once exited ${warm.code}: ${warm.stderr}`);
    }

    const started = Date.now();
    const spawned = roles.map((role) => {
      const child = role.variant === "floor"
        ? spawnScript(FLOOR, [platform.url.href, platform.caFile])
        : role.variant === "post_floor"
        ? spawnScript(FLOOR, [platform.url.href, platform.caFile, "post"])
        : spawnScript(entries.get(role.variant)!, [
          "--state-dir",
          agentIds.get(role.key)!.dir,
          "run",
          ...role.args,
        ]);
      children.push(child);
      const sampler = new ProcSampler(child.pid, 1000);
      sampler.start();
      return { role, child, sampler };
    });
    log(`sampling ${spawned.length} processes for ${seconds} s (window from ${windowFrom} s)`);
    await sleep(seconds * 1000);
    for (const s of spawned) s.sampler.stop();
    const exits = await Promise.all(spawned.map((s) => stop(s.child)));

    const rows: Record<string, Record<string, unknown>> = {};
    spawned.forEach(({ role, sampler }, i) => {
      const exit = exits[i]!;
      if (!role.variant.includes("floor") && exit.code !== 0) {
        throw new Error(`${role.key} exited ${exit.code}: ${exit.stderr.trim()}`);
      }
      const window = sampler.samples.filter((s) => s.wallMs - started >= windowFrom * 1000);
      const from = window[0]!;
      const to = window.at(-1)!;
      const agent = agentIds.get(role.key);
      const p = role.contract === "1.0" ? platform10 : platform;
      const beatsMs = agent ? p.heartbeats(agent.id).map((r) => Date.parse(r.received_at)) : [];
      const beats = (role.variant === "post_floor" ? JSON.parse(exit.stdout) as number[] : beatsMs)
        .filter((t) => t > from.wallMs && t <= to.wallMs).length;
      const cpuMs = (to.cpuTicks - from.cpuTicks) / ticksPerSecond * 1000;
      const rssAt = (atMs: number) =>
        median(window.filter((s) => Math.abs(s.wallMs - atMs) <= 30_000).map((s) => s.rssKiB)) /
        1024;
      rows[role.key] = {
        rss_mib: median(window.map((s) => s.rssKiB)) / 1024,
        growth_mib: rssAt(to.wallMs - 30_000) - rssAt(from.wallMs + 30_000),
        cpu_ms_per_beat: beats > 0 ? cpuMs / beats : null,
        beats,
        idle_wakeups_per_s: role.args.length === 0 && agent
          ? wakeupsBetweenBeats(sampler.samples, beatsMs)
          : null,
      };
    });

    // Start-up, ABAB: --help and run --once, base against every variant.
    const startup: Record<
      string,
      { help: number[]; helpPeak: number[]; once: number[]; oncePeak: number[] }
    > = {};
    for (const id of ids) startup[id] = { help: [], helpPeak: [], once: [], oncePeak: [] };
    const flags = (await import("../permissions.ts")).agentRunFlags;
    const runFlags = await flags();
    for (let i = 0; i < startupRuns; i++) {
      for (const id of i % 2 === 0 ? ids : [...ids].reverse()) {
        const deno = [Deno.execPath(), "run", "--quiet", ...runFlags, entries.get(id)!];
        const help = await timed([...deno, "--help"]);
        const once = await timed([
          ...deno,
          "--state-dir",
          agentIds.get(`${id}#1`)!.dir,
          "run",
          "--once",
        ]);
        if (help.code !== 0 || once.code !== 0) throw new Error(`${id}: start-up run failed`);
        startup[id]!.help.push(help.ms);
        startup[id]!.helpPeak.push(help.peakMiB);
        startup[id]!.once.push(once.ms);
        startup[id]!.oncePeak.push(once.peakMiB);
      }
    }

    const groups = [...new Set(roles.map((r) => r.key.split("#")[0]!))];
    const summary = Object.fromEntries(groups.map((g) => {
      const of = (field: string) =>
        Object.entries(rows).filter(([k]) => k.split("#")[0] === g).map(([, v]) => v[field])
          .filter((x): x is number => typeof x === "number");
      const s = (field: string, digits = 2) => {
        const v = of(field);
        return v.length === 0 ? null : spreadOf(v, digits);
      };
      return [g, {
        rss_mib: s("rss_mib"),
        growth_mib: s("growth_mib"),
        cpu_ms_per_beat: s("cpu_ms_per_beat"),
        idle_wakeups_per_s: s("idle_wakeups_per_s", 3),
        ...(startup[g]
          ? {
            help_ms: spreadOf(startup[g]!.help, 0),
            help_peak_mib: spreadOf(startup[g]!.helpPeak, 1),
            run_once_ms: spreadOf(startup[g]!.once, 0),
            run_once_peak_mib: spreadOf(startup[g]!.oncePeak, 1),
          }
          : {}),
      }];
    }));
    const results = {
      generated_at: new Date().toISOString(),
      commit: await new Deno.Command("git", { args: ["rev-parse", "HEAD"], stdout: "piped" })
        .output().then((o) => new TextDecoder().decode(o.stdout).trim()),
      seconds,
      window_from_seconds: windowFrom,
      replicas,
      startup_runs: startupRuns,
      load_average: {
        start: loadAtStart.map((v) => round(v)),
        end: Deno.loadavg().map((v) => round(v)),
      },
      variants: [
        { id: BASE, workaround: null, plain: null },
        ...variants.map(({ id, workaround, plain }) => ({ id, workaround, plain })),
      ],
      summary,
      processes: rows,
    };
    await Deno.writeTextFile(values.out!, JSON.stringify(results, null, 2) + "\n");
    console.log(JSON.stringify(summary, null, 2));
    log(`wrote ${values.out}`);
  } finally {
    killAll(children);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
