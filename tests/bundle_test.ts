import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { MAIN, repoPath } from "./_support/helpers.ts";
import { bundle, BUNDLE_ENTRY, BUNDLE_STORE } from "../tasks/bundle.ts";

const STATIC_IMPORT = /^(?:import|export)\s[^;]*?\sfrom\s*"(\.\/[^"]+)"|^import\s*"(\.\/[^"]+)"/gm;

/** The chunks a module loads before it runs: its static import closure. */
async function staticClosure(
  dir: string,
  file: string,
  seen = new Set<string>(),
): Promise<Set<string>> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = await Deno.readTextFile(join(dir, file));
  for (const m of text.matchAll(STATIC_IMPORT)) {
    await staticClosure(dir, (m[1] ?? m[2])!.slice(2), seen);
  }
  return seen;
}

Deno.test("bundle: a steady run loads no npm package, no static Node built-in, no classic zod, no x509", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-bundle-test-" });
  try {
    await bundle(join(dir, "out"));
    const out = join(dir, "out");
    const files = [];
    for await (const e of Deno.readDir(out)) if (e.isFile) files.push(e.name);
    files.push("proxy/pac_evaluator.js");
    const run = files.find((f) => /^run-[\w-]+\.js$/.test(f));
    assert.ok(run, `no heartbeat chunk in ${files.join(", ")}`);
    const closure = new Set([
      ...await staticClosure(out, "main.js"),
      ...await staticClosure(out, run),
    ]);
    const text = (await Promise.all([...closure].map((f) => Deno.readTextFile(join(out, f)))))
      .join("\n");
    assert.doesNotMatch(text, /from\s*"npm:|import\(\s*"npm:/);
    // The support bundle (src/diagnostics/) loads only with `diagnostics`.
    assert.doesNotMatch(text, /ustar|clock_and_outage\.json/);
    // Node built-ins start Deno's Node compat layer (about +2 MB RSS for the first one): none is
    // imported statically on the run path. node:os is imported dynamically, only where telemetry
    // needs cpus() (macOS, Windows; Linux reads /proc/stat through head).
    const builtins = (re: RegExp) => [...new Set([...text.matchAll(re)].map((m) => m[1]))].sort();
    assert.deepEqual(builtins(/from\s*"(node:[\w/]+)"/g), []);
    assert.deepEqual(builtins(/import\(\s*"(node:[\w/]+)"/g), ["node:os"]);
    // toISOString maps runtime data a steady run does not otherwise touch: src/iso_time.ts instead.
    assert.doesNotMatch(text, /\.toISOString\(/);
    // The fatal decoder maps Deno code a steady run can do without: bodies go through
    // decodeUtf8Strict. (WebCrypto's digest is on the run path, the host digest: it costs 0.1-0.3
    // MiB, docs/footprint.md "Workarounds"; its key import only for a key file without its point.)
    assert.doesNotMatch(text, /fatal:\s*true/);
    assert.match(text, /zod\/4\.\d+\.\d+\/v4\/mini\//, "zod/mini is bundled");
    assert.doesNotMatch(text, /zod\/4\.\d+\.\d+\/v4\/classic\//);
    assert.deepEqual([...new Set(text.match(/v4\/locales\/\w+\.js/g))], ["v4/locales/en.js"]);
    assert.doesNotMatch(
      text,
      /registry\.npmjs\.org\/(?:@peculiar|reflect-metadata|commander|tslib)\//,
    );
    // x509 is in the bundle, but only behind a dynamic import.
    const all = (await Promise.all(files.map((f) => Deno.readTextFile(join(out, f))))).join("\n");
    assert.match(all, /registry\.npmjs\.org\/@peculiar\/x509\//);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "bundle: with ONECONNECT_TEST_ENTRY the end-to-end suites spawn the bundle",
  { ignore: Deno.env.get("ONECONNECT_TEST_ENTRY") === undefined },
  () => {
    // The real path of dist/bundle/main.js: a bundle of the store (tasks/bundle.ts), or
    // dist/bundle itself where symlinks cannot be made.
    const store = Deno.realPathSync(repoPath(BUNDLE_STORE));
    assert.ok(
      MAIN === Deno.realPathSync(repoPath(BUNDLE_ENTRY)) || dirname(dirname(MAIN)) === store,
      MAIN,
    );
  },
);
