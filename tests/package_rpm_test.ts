import assert from "node:assert/strict";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { rpmScriptlets } from "../tasks/package/scripts.ts";
import { findTool, skipWithout, tempDir } from "./_support/helpers.ts";
import { hostRun, systemdContainerUnavailable } from "./_support/systemd_container.ts";
import {
  assertPurged,
  assertResumes,
  assertUpgradedOnce,
  buildTestPackages,
  CA_IN_CONTAINER,
  CONFIG_FILE,
  copyPackages,
  heartbeatWatch,
  payloadContainer,
  unitState,
} from "./_support/package_fixture.ts";

const RPMBUILD = findTool("rpmbuild");
const UNAVAILABLE = systemdContainerUnavailable() ??
  (RPMBUILD === null ? "rpmbuild not found (apt-get install -y rpm)" : null);
if (UNAVAILABLE) console.warn(`SKIPPING .rpm lifecycle tests: ${UNAVAILABLE}`);

const ENV = { HOME: "/root" };
const STATE = "/var/lib/oneconnect-agent";
/**
 * Debian's rpm refuses to install without --force-debian (it wants alien); --nodeps: the
 * container's dependencies are dpkg's, which rpm's database does not know.
 */
const RPM = "rpm --force-debian --nodeps";

Deno.test({
  name: "rpm carries the scriptlets, the conffile and the layout; rpm -qp reads them back",
  ignore: skipWithout(RPMBUILD !== null),
  async fn() {
    await using tmp = await tempDir();
    const [rpm] = await buildTestPackages(tmp.path, "0.2.0-rc.1", ["rpm"]);
    assert.match(rpm!, /oneconnect-agent-0\.2\.0~rc\.1-1\.x86_64\.rpm$/);
    const q = async (...args: string[]) => (await hostRun(["rpm", "-qp", ...args, rpm!])).stdout;
    assert.equal(
      await q("--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}\\n"),
      "oneconnect-agent 0.2.0~rc.1 1 x86_64\n",
    );
    const files = (await q("-l")).split("\n").filter((l) => l !== "");
    assert.ok(files.includes("/usr/bin/oneconnect-agent"));
    assert.ok(files.includes("/usr/lib/systemd/system/oneconnect-agent.service"));
    assert.ok(files.includes("/usr/lib/systemd/system/oneconnect-agent-enroll.path"));
    assert.ok(files.every((f) => !f.startsWith("/usr/local")));
    assert.equal(await q("-c"), "/etc/oneconnect-agent/agent.json\n");
    const scripts = await q("--scripts");
    for (const [name, body] of Object.entries(rpmScriptlets())) {
      assert.ok(scripts.includes(body.trim().split("\n").at(-2)!), `%${name} missing`);
    }
  },
});

Deno.test("rpm scriptlets are valid POSIX sh and do nothing in the old package's half of an upgrade", async () => {
  await using tmp = await tempDir();
  for (const [name, text] of Object.entries(rpmScriptlets())) {
    const path = `${tmp.path}/${name}`;
    await Deno.writeTextFile(path, text);
    assert.equal((await hostRun(["sh", "-n", path])).code, 0, name);
  }
  // Run the old package's %preun and %postun with $1 = 1 against a systemctl that records calls.
  const log = `${tmp.path}/calls`;
  await Deno.mkdir(`${tmp.path}/bin`);
  await Deno.writeTextFile(`${tmp.path}/bin/systemctl`, `#!/bin/sh\necho "$@" >> ${log}\n`, {
    mode: 0o755,
  });
  for (const name of ["preun", "postun"] as const) {
    const r = await hostRun(["sh", "-c", rpmScriptlets()[name], name, "1"], {
      env: { PATH: `${tmp.path}/bin:/usr/bin:/bin` },
    });
    assert.equal(r.code, 0, r.stderr);
  }
  assert.equal(await Deno.readTextFile(log).catch(() => ""), "");
});

Deno.test({
  name:
    "rpm lifecycle under systemd: install, rpm -U to the same and a newer version, erase, reinstall, purge",
  ignore: skipWithout(UNAVAILABLE === null),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using platform = await startDevPlatform({ quiet: true });
    await using tmp = await tempDir();
    const [v1] = await buildTestPackages(tmp.path, "0.1.0", ["rpm"]);
    const [v2] = await buildTestPackages(tmp.path, "0.1.1", ["rpm"]);
    await using box = await payloadContainer(platform.caCertPem);
    const [rpm1, rpm2] = await copyPackages(box, [v1!, v2!]);
    const rpm = (args: string, env: Record<string, string> = {}) =>
      box.sh(`${RPM} ${args} </dev/null`, { env: { ...ENV, ...env } });
    const watch = heartbeatWatch(platform);

    await t.step("rpm -i: enabled, not started without an identity", async () => {
      await rpm(`-i ${rpm1}`);
      const s = await unitState(box);
      assert.equal(s.UnitFileState, "enabled");
      assert.equal(s.ActiveState, "inactive");
      assert.equal((await unitState(box, "oneconnect-agent-enroll.path")).ActiveState, "active");
      assert.equal((await box.sh(`stat -c %a ${STATE}`)).trim(), "700");
    });

    await t.step("enrolled by hand and started", async () => {
      await box.sh(
        `oneconnect-agent enroll --url ${platform.url.href} --ca-file ${CA_IN_CONTAINER} --token-file -`,
        { env: ENV, stdin: platform.mintEnrollmentToken() },
      );
      watch.agentId = JSON.parse(await box.sh(`cat ${STATE}/identity.json`)).agent_id;
      await box.sh("systemctl start oneconnect-agent.service");
      await watch.after(0);
    });

    const edited = '{ "log_level": "info" }\n';
    await box.writeFile(CONFIG_FILE, edited);

    for (
      const [args, label] of [[`-U --replacepkgs ${rpm1}`, "0.1.0"], [
        `-U ${rpm2}`,
        "0.1.1",
      ]] as const
    ) {
      await t.step(
        `rpm ${args.split(" /")[0]} (${label}): restarted once, never left stopped`,
        async () => {
          await assertUpgradedOnce(box, watch, label, edited, () => rpm(args));
          assert.equal(
            (await box.sh("rpm -q oneconnect-agent")).trim(),
            `oneconnect-agent-${label}-1.x86_64`,
          );
        },
      );
    }

    await t.step("rpm -e: stopped and disabled, identity kept; rpm -i resumes", async () => {
      await rpm("-e oneconnect-agent");
      const s = await unitState(box);
      assert.equal(s.ActiveState, "inactive");
      assert.notEqual(s.UnitFileState, "enabled");
      assert.equal(JSON.parse(await box.sh(`cat ${STATE}/identity.json`)).agent_id, watch.agentId);
      await assertResumes(box, platform, watch, () => rpm(`-i ${rpm2}`));
    });

    await t.step(
      "ONECONNECT_PURGE=1 rpm -e: unenrolled, identity and configuration deleted",
      async () => {
        await rpm("-e oneconnect-agent", { ONECONNECT_PURGE: "1" });
        await assertPurged(box, platform, watch.agentId);
      },
    );
  },
});
