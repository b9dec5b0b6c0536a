import assert from "node:assert/strict";
import { join, normalize } from "node:path";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { packageAll } from "../tasks/package.ts";
import { DEFAULT_REPO_URL, KEY_FILE } from "../tasks/package/repo.ts";
import { findTool, skipWithout, tempDir, until } from "./_support/helpers.ts";
import { hostRun, hostRunOk, systemdContainerUnavailable } from "./_support/systemd_container.ts";
import {
  buildTestPackages,
  CA_IN_CONTAINER,
  payloadContainer,
  unitState,
} from "./_support/package_fixture.ts";
import { throwawayKey } from "./_support/gpg_key.ts";

const TOOLS = ["apt-ftparchive", "gpg", "gpgv", "createrepo_c", "rpmsign", "rpmbuild", "dpkg-deb"];
const MISSING = TOOLS.filter((t) => findTool(t) === null);
const UNAVAILABLE = systemdContainerUnavailable() ??
  (MISSING.length > 0 ? `${MISSING.join(", ")} not found (.ci/run installs them)` : null);
if (UNAVAILABLE) console.warn(`SKIPPING repository tests: ${UNAVAILABLE}`);
const RPMLINT = findTool("rpmlint");

const DOCS = await Deno.readTextFile(new URL("../docs/packages.md", import.meta.url));

/** The lines of docs/packages.md that add the apt repository, for the base URL `base`. */
function aptLinesFromDocs(base: string): string[] {
  const lines = DOCS.split("\n").filter((l) =>
    l.includes("/etc/apt/keyrings/oneconnect-agent.asc") &&
    (l.startsWith("sudo curl") || l.startsWith('echo "deb'))
  );
  assert.equal(lines.length, 2, "docs/packages.md shows the two apt lines");
  const docsBase = "https://packages.example.com/oneconnect";
  // Run as root inside: sudo is not installed there and not needed.
  return lines.map((l) => l.replaceAll(docsBase, base).replaceAll("sudo ", ""));
}

/** Serves `dir` read-only on the loopback (a static web server, as a CDN would). */
function serveDir(dir: string): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = normalize(decodeURIComponent(new URL(req.url).pathname));
    if (path.includes("..")) return new Response("bad path", { status: 400 });
    try {
      return new Response(await Deno.readFile(join(dir, path)));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

Deno.test({
  name:
    "apt installs and upgrades from the signed repository added as the docs say, and refuses another key's signature",
  ignore: skipWithout(UNAVAILABLE === null),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using tmp = await tempDir();
    const good = await throwawayKey(join(tmp.path, "gnupg-good"));
    const served = join(tmp.path, "served");
    await using server = serveDir(served);
    const base = `http://127.0.0.1:${server.addr.port}`;
    const repo = (key: typeof good) => ({
      key: key.fingerprint,
      gnupgHome: key.home,
      outDir: served,
      baseUrl: base,
    });
    await buildTestPackages(tmp.path, "0.1.0", ["deb"], "0.1.0", repo(good));
    await using platform = await startDevPlatform({ quiet: true });
    await using box = await payloadContainer(platform.caCertPem);
    // Only this repository: the image's Debian sources would make apt-get update slow.
    await box.sh("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*");
    const apt = (args: string, env: Record<string, string> = {}) =>
      box.exec(["sh", "-c", `apt-get -q ${args} </dev/null 2>&1`], {
        env: { HOME: "/root", DEBIAN_FRONTEND: "noninteractive", ...env },
      });

    await t.step("the docs' two lines, apt-get update, apt-get install", async () => {
      for (const line of aptLinesFromDocs(base)) await box.sh(line);
      const update = await apt("update");
      assert.equal(update.code, 0, update.stdout);
      assert.doesNotMatch(update.stdout, /^W: /m, update.stdout);
      const install = await apt("install -y oneconnect-agent", {
        ONECONNECT_PLATFORM_URL: platform.url.href,
        ONECONNECT_CA_FILE: CA_IN_CONTAINER,
        ONECONNECT_ENROLLMENT_TOKEN: platform.mintEnrollmentToken(),
      });
      assert.equal(install.code, 0, install.stdout);
      assert.equal(await box.sh("dpkg-query -W -f='${Version}' oneconnect-agent"), "0.1.0");
      // Provisioned through apt-get: enrolled and heartbeating.
      await until(() => platform.heartbeats().length > 0, "a heartbeat", 30_000);
    });

    await t.step("a newer version published: apt-get install upgrades, same agent", async () => {
      const agentId = platform.heartbeats()[0]!.agent_id;
      await buildTestPackages(tmp.path, "0.1.1", ["deb"], "0.1.1", repo(good));
      assert.equal((await apt("update")).code, 0);
      const upgrade = await apt("install -y oneconnect-agent");
      assert.equal(upgrade.code, 0, upgrade.stdout);
      assert.equal(await box.sh("dpkg-query -W -f='${Version}' oneconnect-agent"), "0.1.1");
      assert.equal((await unitState(box)).ActiveState, "active");
      const seen = platform.heartbeats().length;
      await until(
        () => platform.heartbeats().length > seen,
        "a heartbeat after the upgrade",
        60_000,
      );
      assert.ok(platform.heartbeats().every((h) => h.agent_id === agentId));
    });

    await t.step("a repository signed by another key is refused", async () => {
      const other = await throwawayKey(join(tmp.path, "gnupg-other"), "Someone Else");
      await buildTestPackages(tmp.path, "0.1.2", ["deb"], "0.1.2", repo(other));
      const update = await apt("update");
      // apt keeps the last verified index and says why it ignored the new one.
      assert.match(update.stdout, /NO_PUBKEY/, update.stdout);
      assert.match(update.stdout, /The repository is not updated/, update.stdout);
      // With --error-on=any (apt >= 2.6) the refusal is an error exit, as CI scripts use it.
      assert.notEqual((await apt("update --error-on=any")).code, 0);
      assert.match(await box.sh("apt-cache policy oneconnect-agent"), /Candidate: 0\.1\.1\n/);
      const install = await apt("install -y oneconnect-agent");
      assert.equal(await box.sh("dpkg-query -W -f='${Version}' oneconnect-agent"), "0.1.1");
      assert.doesNotMatch(install.stdout, /0\.1\.2/);
    });
  },
});

Deno.test({
  name:
    "dnf repository: repomd.xml and packages signed; rpmlint passes the signed ELF package with no error",
  ignore: skipWithout(MISSING.length === 0 && RPMLINT !== null),
  async fn() {
    await using tmp = await tempDir();
    const key = await throwawayKey(join(tmp.path, "gnupg"));
    // An ELF payload, as released (a copy of a small system binary stands in for deno compile's).
    const elf = join(tmp.path, "elf");
    await Deno.copyFile("/usr/bin/true", elf);
    const out = join(tmp.path, "out");
    await packageAll({
      root: new URL("..", import.meta.url).pathname,
      version: "0.1.0",
      distDir: tmp.path,
      outDir: out,
      binary: elf,
      formats: ["deb", "rpm"],
      repoKey: key.fingerprint,
      gnupgHome: key.home,
      date: new Date(),
      print: () => {},
    });
    const sums = await Deno.readTextFile(join(out, "SHA256SUMS"));
    assert.match(sums, /^[0-9a-f]{64} {2}oneconnect-agent_0\.1\.0_amd64\.deb$/m);
    assert.match(sums, /^[0-9a-f]{64} {2}oneconnect-agent-0\.1\.0-1\.x86_64\.rpm$/m);
    const check = await hostRun(["sh", "-c", `cd ${out} && sha256sum -c SHA256SUMS`]);
    assert.equal(check.code, 0, check.stdout + check.stderr);

    // The public key verifies the metadata with gpgv (no keyring of ours involved).
    const keyring = join(tmp.path, "keyring.gpg");
    await hostRunOk(["gpg", "--batch", "--dearmor", "-o", keyring, join(out, KEY_FILE)]);
    const repomd = join(out, "rpm/repodata/repomd.xml");
    await hostRunOk(["gpgv", "--keyring", keyring, `${repomd}.asc`, repomd]);
    const tampered = join(tmp.path, "repomd.xml");
    await Deno.writeTextFile(
      tampered,
      (await Deno.readTextFile(repomd)).replace("<data", "<data "),
    );
    assert.notEqual(
      (await hostRun(["gpgv", "--keyring", keyring, `${repomd}.asc`, tampered])).code,
      0,
    );
    await hostRunOk(["gpgv", "--keyring", keyring, join(out, "apt/dists/stable/InRelease")]);

    // rpm -K with the key imported into a throwaway rpm database.
    const rpm = join(out, "rpm/oneconnect-agent-0.1.0-1.x86_64.rpm");
    const db = ["--dbpath", join(tmp.path, "rpmdb")];
    await hostRunOk(["rpm", ...db, "--initdb"]);
    await hostRunOk(["rpm", ...db, "--import", join(out, KEY_FILE)]);
    assert.match(await hostRunOk(["rpm", ...db, "-K", rpm]), /digests signatures OK/);
    // The package next to SHA256SUMS is the same signed one (signed before the sums were made).
    const released = join(out, "oneconnect-agent-0.1.0-1.x86_64.rpm");
    assert.match(await hostRunOk(["rpm", ...db, "-K", released]), /digests signatures OK/);
    const repoFile = await Deno.readTextFile(join(out, "rpm/oneconnect-agent.repo"));
    assert.match(repoFile, new RegExp(`^baseurl=${DEFAULT_REPO_URL}/rpm$`, "m"));
    assert.match(repoFile, /^repo_gpgcheck=1$/m);
    assert.match(repoFile, /^gpgcheck=1$/m);

    // rpmlint checks the signature against rpm's database: ours, through ~/.rpmmacros.
    await Deno.writeTextFile(join(tmp.path, ".rpmmacros"), `%_dbpath ${db[1]}\n`);
    const lint = await hostRun([RPMLINT!, rpm], { env: { HOME: tmp.path } });
    assert.match(lint.stdout, / 0 errors/, lint.stdout);
    const warnings = [...lint.stdout.matchAll(/^oneconnect-agent\.x86_64: W: ([a-z0-9%-]+)/gm)]
      .map((m) => m[1]!);
    for (const w of warnings) assert.ok(DOCS.includes(`rpmlint \`${w}`), `${w} not in docs`);
  },
});
