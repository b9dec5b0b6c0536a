import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parsePlist } from "plist";
import {
  DEFAULT_SIGNING,
  MACOS_BINARY_PATH,
  MACOS_LABEL,
  macosPkgPlan,
  runMacosPkgPlan,
} from "../tasks/package/macos_pkg.ts";
import { findTool, tempDir } from "./_support/helpers.ts";

async function plan(dir: string) {
  const binary = join(dir, "oneconnect-agent-darwin-arm64");
  await Deno.writeTextFile(binary, `Mach-O stand-in ${crypto.randomUUID()}`);
  const outDir = join(dir, "packages");
  return { binary, outDir, plan: await macosPkgPlan({ version: "1.2.3", binary, outDir }) };
}

Deno.test("macOS pkg plan stages the binary, the LaunchDaemon, the scripts and the entitlements", async () => {
  await using dir = await tempDir();
  const { binary, outDir, plan: p } = await plan(dir.path);
  const work = join(outDir, "macos-pkg-1.2.3");
  assert.deepEqual(p.files, [
    join(work, "root", MACOS_BINARY_PATH),
    join(work, "root/Library/LaunchDaemons/com.oneconnect.agent.plist"),
    join(work, "scripts/preinstall"),
    join(work, "scripts/postinstall"),
    join(work, "entitlements.plist"),
  ]);
  for (const file of p.files) assert.ok((await Deno.stat(file)).isFile, file);
  assert.deepEqual(await Deno.readFile(p.files[0]!), await Deno.readFile(binary));
  const mode = async (f: string) => (await Deno.stat(f)).mode! & 0o777;
  if (Deno.build.os !== "windows") {
    assert.equal(await mode(p.files[0]!), 0o755);
    assert.equal(await mode(p.files[1]!), 0o644);
    assert.equal(await mode(p.files[3]!), 0o755);
  }
  // The daemon runs the binary where the payload puts it, with the documented state directory.
  const daemon = parsePlist(await Deno.readTextFile(p.files[1]!)) as Record<string, unknown>;
  assert.equal(daemon.Label, MACOS_LABEL);
  assert.deepEqual(daemon.ProgramArguments, [MACOS_BINARY_PATH, "run"]);
  // A second plan replaces the staging (no stale file from an earlier version).
  await Deno.writeTextFile(join(work, "stale"), "x");
  await macosPkgPlan({ version: "1.2.3", binary, outDir });
  await assert.rejects(Deno.stat(join(work, "stale")), Deno.errors.NotFound);
});

Deno.test("macOS entitlements: exactly the JIT exceptions V8 needs under the hardened runtime", async () => {
  await using dir = await tempDir();
  const { plan: p } = await plan(dir.path);
  const entitlements = parsePlist(await Deno.readTextFile(p.files[4]!));
  assert.deepEqual(entitlements, {
    "com.apple.security.cs.allow-jit": true,
    "com.apple.security.cs.allow-unsigned-executable-memory": true,
  });
});

Deno.test("macOS scripts: valid sh, provision before the daemon is (re)loaded, the target volume only", async () => {
  await using dir = await tempDir();
  const { plan: p } = await plan(dir.path);
  const sh = findTool("sh");
  for (const script of [p.files[2]!, p.files[3]!]) {
    const text = await Deno.readTextFile(script);
    assert.match(text, /^#!\/bin\/sh\n/);
    assert.match(text, /\[ "\$\{3:-\/\}" = "\/" \] \|\| exit 0/);
    if (sh) {
      const out = await new Deno.Command(sh, { args: ["-n", script] }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
    }
  }
  const post = await Deno.readTextFile(p.files[3]!);
  const provision = post.indexOf(`${MACOS_BINARY_PATH} provision`);
  const bootstrap = post.indexOf(`launchctl bootstrap system "$PLIST"`);
  assert.ok(provision > 0 && bootstrap > provision, "provision, then bootstrap");
  assert.match(post, /install -d -o root -g wheel -m 0755 \/Library\/Logs\/OneConnect/);
  assert.match(
    await Deno.readTextFile(p.files[2]!),
    /launchctl bootout system\/com\.oneconnect\.agent/,
  );
});

Deno.test("macOS pkg plan: codesign with the hardened runtime, pkgbuild, productbuild, notarize, staple", async () => {
  await using dir = await tempDir();
  const { outDir, plan: p } = await plan(dir.path);
  const work = join(outDir, "macos-pkg-1.2.3");
  const binary = join(work, "root", MACOS_BINARY_PATH);
  const component = join(work, "oneconnect-agent-component.pkg");
  const product = join(outDir, "oneconnect-agent_1.2.3_arm64.pkg");
  assert.deepEqual(p.commands, [
    [
      "codesign",
      "--force",
      "--timestamp",
      "--options",
      "runtime",
      "--entitlements",
      join(work, "entitlements.plist"),
      "--sign",
      DEFAULT_SIGNING.application,
      binary,
    ],
    ["codesign", "--verify", "--strict", "--verbose=2", binary],
    [
      "pkgbuild",
      "--root",
      join(work, "root"),
      "--scripts",
      join(work, "scripts"),
      "--identifier",
      "com.oneconnect.agent",
      "--version",
      "1.2.3",
      "--install-location",
      "/",
      component,
    ],
    ["productbuild", "--package", component, "--sign", "Developer ID Installer", product],
    [
      "xcrun",
      "notarytool",
      "submit",
      product,
      "--keychain-profile",
      "oneconnect-notary",
      "--wait",
    ],
    ["xcrun", "stapler", "staple", product],
    ["pkgutil", "--check-signature", product],
  ]);
  // Every path a command names was staged by the plan (or is made by an earlier command).
  for (const command of p.commands) {
    for (const arg of command.filter((a) => a.startsWith("/"))) {
      if (arg === "/" || arg === component || arg === product) continue;
      assert.ok(await Deno.stat(arg), arg);
    }
  }
});

Deno.test({
  name: "macOS pkg plan refuses to execute off a Mac",
  ignore: Deno.build.os === "darwin",
}, async () => {
  await assert.rejects(
    runMacosPkgPlan({ files: [], commands: [["codesign", "--version"]] }),
    /signed and notarized on a Mac/,
  );
});
