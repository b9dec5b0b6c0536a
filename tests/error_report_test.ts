import assert from "node:assert/strict";

const SECRET = "oc_sat_uncaught_secret_0123456789";

async function crash(body: string): Promise<{ code: number; stderr: string }> {
  const script = `
    import { registerSecret } from ${
    JSON.stringify(new URL("../src/log.ts", import.meta.url).href)
  };
    import { reportUncaughtErrors } from ${
    JSON.stringify(new URL("../src/error_report.ts", import.meta.url).href)
  };
    reportUncaughtErrors((code) => Deno.exit(code));
    registerSecret(${JSON.stringify(SECRET)});
    ${body}
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

for (
  const [kind, body] of [
    ["an uncaught error", `setTimeout(() => { throw new Error("boom ${SECRET}"); }, 0);`],
    ["an unhandled rejection", `Promise.reject(new Error("boom ${SECRET}"));`],
  ]
) {
  Deno.test(`${kind} is reported as one redacted error: line with exit 1`, async () => {
    const { code, stderr } = await crash(body!);
    assert.equal(code, 1);
    assert.ok(!stderr.includes(SECRET), stderr);
    assert.match(
      stderr,
      /^error: internal error: boom \S+ \(rerun with --log-level debug for a trace\)\n$/,
    );
  });
}

Deno.test("src/main.ts reports uncaught errors through reportUncaughtErrors", async () => {
  const main = await Deno.readTextFile(new URL("../src/main.ts", import.meta.url));
  assert.match(main, /reportUncaughtErrors\(/);
});
