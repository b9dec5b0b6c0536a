import assert from "node:assert/strict";
import { childEnvironment, runChild } from "../src/child_process.ts";
import { denoCommandRunner } from "../src/state/windows_acl.ts";
import { denoSystem } from "../src/telemetry/system.ts";

const ENV = "/usr/bin/env";
const noEnvTool = Deno.build.os === "windows";

function environmentOf(output: string): Record<string, string> {
  return Object.fromEntries(
    output.split("\n").filter((l) => l.includes("=")).map((l) => {
      const i = l.indexOf("=");
      return [l.slice(0, i), l.slice(i + 1)];
    }),
  );
}

Deno.test({
  name: "child processes get a cleared environment: no enrollment token, only PATH and LC_ALL",
  ignore: noEnvTool,
  fn: async () => {
    const secret = "oc_enroll_never_inherited_0123456789";
    Deno.env.set("ONECONNECT_ENROLLMENT_TOKEN", secret);
    Deno.env.set("HTTPS_PROXY", "http://user:proxy-secret@127.0.0.1:3128");
    try {
      const outputs = [
        await denoSystem.runCommand(ENV, []),
        (await denoCommandRunner(ENV, [])).stdout ?? "",
        (await runChild(ENV, [])).stdout,
      ];
      for (const output of outputs) {
        assert.ok(!output.includes(secret), "the token is not inherited");
        assert.ok(!output.includes("proxy-secret"), "proxy credentials are not inherited");
        assert.deepEqual(environmentOf(output), childEnvironment("linux"));
      }
    } finally {
      Deno.env.delete("ONECONNECT_ENROLLMENT_TOKEN");
      Deno.env.delete("HTTPS_PROXY");
    }
  },
});

Deno.test("child environment on Windows is SystemRoot and PATH only", () => {
  assert.deepEqual(Object.keys(childEnvironment("windows")).sort(), ["PATH", "SystemRoot"]);
});

Deno.test("src/child_process.ts is the only place in src/ that starts a process", async () => {
  const offenders: string[] = [];
  for await (const entry of Deno.readDir(new URL("../src/", import.meta.url))) {
    if (!entry.isFile || !entry.name.endsWith(".ts") || entry.name === "child_process.ts") continue;
    const text = await Deno.readTextFile(new URL(`../src/${entry.name}`, import.meta.url));
    if (/Deno\.(Command|run)\b/.test(text)) offenders.push(entry.name);
  }
  assert.deepEqual(offenders, []);
});
