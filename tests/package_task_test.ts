import assert from "node:assert/strict";
import { join } from "node:path";
import { main, packageAll } from "../tasks/package.ts";
import { LINUX_ARCHES, packageVersion } from "../tasks/package/layout.ts";
import { TARGETS } from "../tasks/build_all.ts";
import denoJson from "../deno.json" with { type: "json" };
import { findTool, skipWithout, tempDir } from "./_support/helpers.ts";
import { hostRun } from "./_support/systemd_container.ts";

const TOOLS = findTool("dpkg-deb") !== null && findTool("rpmbuild") !== null;
if (!TOOLS) console.warn("SKIPPING package task tests: dpkg-deb or rpmbuild not found");

Deno.test({
  name:
    "package turns build-all's Linux binaries into a .deb and an .rpm per architecture with SHA256SUMS",
  ignore: skipWithout(TOOLS),
  async fn() {
    await using tmp = await tempDir();
    const dist = join(tmp.path, "dist");
    await Deno.mkdir(dist);
    for (const target of TARGETS.filter((t) => t.name.startsWith("linux-"))) {
      await Deno.writeTextFile(join(dist, target.file), `#!/bin/sh\necho ${target.name}\n`, {
        mode: 0o755,
      });
    }
    const out = join(tmp.path, "packages");
    const lines: string[] = [];
    const written = await packageAll({
      root: new URL("..", import.meta.url).pathname,
      version: denoJson.version,
      distDir: dist,
      outDir: out,
      formats: ["deb", "rpm"],
      date: new Date(0),
      print: (l) => lines.push(l),
    });
    const v = denoJson.version;
    assert.deepEqual(written.map((p) => p.slice(out.length + 1)), [
      `oneconnect-agent_${v}_amd64.deb`,
      `oneconnect-agent-${v}-1.x86_64.rpm`,
      `oneconnect-agent_${v}_arm64.deb`,
      `oneconnect-agent-${v}-1.aarch64.rpm`,
    ]);
    for (const arch of LINUX_ARCHES) {
      const deb = join(out, `oneconnect-agent_${v}_${arch.deb}.deb`);
      const field = await hostRun(["dpkg-deb", "-f", deb, "Architecture", "Version", "Package"]);
      assert.equal(
        field.stdout,
        `Architecture: ${arch.deb}\nVersion: ${v}\nPackage: oneconnect-agent\n`,
      );
      // Each package carries its own architecture's binary.
      const bin = await hostRun([
        "sh",
        "-c",
        `dpkg-deb --fsys-tarfile ${deb} | tar -xO ./usr/bin/oneconnect-agent`,
      ]);
      assert.equal(bin.stdout, `#!/bin/sh\necho ${arch.target}\n`);
      const rpm = join(out, `oneconnect-agent-${v}-1.${arch.rpm}.rpm`);
      assert.equal((await hostRun(["rpm", "-qp", "--qf", "%{ARCH}", rpm])).stdout, arch.rpm);
    }
    const check = await hostRun(["sh", "-c", `cd ${out} && sha256sum -c SHA256SUMS`]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal(check.stdout.trim().split("\n").length, 4);
  },
});

Deno.test("package refuses bad input with one line and exit 2", async () => {
  await using tmp = await tempDir();
  const cases: [string[], RegExp][] = [
    [["--version", "1.2"], /Invalid version "1\.2"/],
    [["--repo"], /--repo needs --sign-key/],
    [["--target", "linux-arm64"], /--target goes with --binary/],
    [["--format", "apk"], /Unknown format "apk"/],
    [["--dist", join(tmp.path, "empty")], /No binaries in ".*": run deno task build-all first/],
    [["--binary", join(tmp.path, "missing")], /No such file: ".*missing" \(--binary\)/],
  ];
  for (const [args, message] of cases) {
    const errors: string[] = [];
    const original = console.error;
    console.error = (line: string) => errors.push(line);
    try {
      assert.equal(
        await main([...args, "--out", join(tmp.path, "out")], () => {}),
        2,
        args.join(" "),
      );
    } finally {
      console.error = original;
    }
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, message);
  }
});

Deno.test("package versions: a prerelease sorts before its release in dpkg and rpm", async () => {
  assert.equal(packageVersion("1.2.3"), "1.2.3");
  assert.equal(packageVersion("1.2.3-rc.1"), "1.2.3~rc.1");
  if (findTool("dpkg") !== null) {
    const r = await hostRun(["dpkg", "--compare-versions", "1.2.3~rc.1", "lt", "1.2.3"]);
    assert.equal(r.code, 0);
  }
  if (findTool("rpm") !== null) {
    const r = await hostRun(["rpm", "--eval", "%{lua: print(rpm.vercmp('1.2.3~rc.1', '1.2.3'))}"]);
    assert.equal(r.stdout.trim(), "-1");
  }
});

Deno.test("package --target macos-arm64 stages the pkg and prints the signing and notarization commands", async () => {
  await using tmp = await tempDir();
  const binary = join(tmp.path, "agent");
  await Deno.writeTextFile(binary, "#!/bin/sh\n", { mode: 0o755 });
  const lines: string[] = [];
  const out = join(tmp.path, "out");
  assert.equal(
    await main(["--binary", binary, "--target", "macos-arm64", "--out", out], (l) => lines.push(l)),
    0,
  );
  const text = lines.join("\n");
  for (const tool of ["codesign", "pkgbuild", "productbuild", "notarytool", "stapler"]) {
    assert.match(text, new RegExp(`^  (xcrun )?${tool} `, "m"), tool);
  }
  // Nothing is built for macOS here, so nothing is listed in SHA256SUMS.
  assert.equal(await Deno.readTextFile(join(out, "SHA256SUMS")), "");
});
