import assert from "node:assert/strict";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { debScripts, PURGE_UNENROLL_SECONDS } from "../tasks/package/scripts.ts";
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
  processEnv,
  tcpForwarder,
  unitState,
} from "./_support/package_fixture.ts";

const UNAVAILABLE = systemdContainerUnavailable() ??
  (findTool("dpkg-deb") === null ? "dpkg-deb not found (apt-get install -y dpkg)" : null);
if (UNAVAILABLE) console.warn(`SKIPPING .deb lifecycle tests: ${UNAVAILABLE}`);
const LINTIAN = findTool("lintian");
if (!LINTIAN) console.warn("SKIPPING lintian: not found (apt-get install -y lintian)");

const ENV = { HOME: "/root" };
const STATE = "/var/lib/oneconnect-agent";

Deno.test({
  name: "deb passes lintian with no error and only the documented warnings",
  ignore: skipWithout(LINTIAN !== null && findTool("dpkg-deb") !== null),
  async fn() {
    await using tmp = await tempDir();
    const [deb] = await buildTestPackages(tmp.path, "0.1.0", ["deb"]);
    const out = await hostRun([LINTIAN!, "--fail-on", "error", "--no-tag-display-limit", deb!]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    const tags = new Set(
      [...out.stdout.matchAll(/^([EWIP]): oneconnect-agent: ([a-z0-9-]+)/gm)].map((m) =>
        `${m[1]}: ${m[2]}`
      ),
    );
    // docs/packages.md explains each one kept.
    assert.deepEqual([...tags].filter((t) => t.startsWith("E")), []);
    assert.deepEqual([...tags].filter((t) => t.startsWith("W")), [
      "W: maintainer-script-calls-systemctl",
    ]);
    const docs = await Deno.readTextFile(new URL("../docs/packages.md", import.meta.url));
    for (const tag of tags) {
      if (tag.startsWith("W")) assert.ok(docs.includes(tag.slice(3)), `${tag} not in docs`);
    }
    // dpkg-deb reads it back: files root-owned, the conffile declared, the layout of the issue.
    const contents = (await hostRun(["dpkg-deb", "--contents", deb!])).stdout;
    assert.match(contents, /-rwxr-xr-x root\/root .* \.\/usr\/bin\/oneconnect-agent\n/);
    assert.match(contents, /\.\/usr\/lib\/systemd\/system\/oneconnect-agent\.service\n/);
    assert.doesNotMatch(contents, /usr\/local/);
    const conffiles = (await hostRun(["dpkg-deb", "--info", deb!, "conffiles"])).stdout;
    assert.equal(conffiles, "/etc/oneconnect-agent/agent.json\n");
  },
});

Deno.test("deb maintainer scripts are valid POSIX sh and never stop the service on upgrade", async () => {
  await using tmp = await tempDir();
  for (const [name, text] of Object.entries(debScripts())) {
    const path = `${tmp.path}/${name}`;
    await Deno.writeTextFile(path, text);
    const check = await hostRun(["sh", "-n", path]);
    assert.equal(check.code, 0, `${name}: ${check.stderr}`);
  }
  // The old package's prerm on upgrade must not stop anything (the new postinst restarts once).
  const prerm = debScripts().prerm;
  const upgradeCase = prerm.slice(prerm.indexOf("upgrade|failed-upgrade)"));
  assert.doesNotMatch(upgradeCase.slice(0, upgradeCase.indexOf(";;")), /systemctl|oc_/);
});

Deno.test({
  name: "deb lifecycle under systemd: install, upgrade twice, remove, reinstall, purge",
  ignore: skipWithout(UNAVAILABLE === null),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using platform = await startDevPlatform({ quiet: true });
    await using forward = tcpForwarder(Number(platform.url.port));
    const url = `https://127.0.0.1:${forward.port}/`;
    await using tmp = await tempDir();
    const [v1] = await buildTestPackages(tmp.path, "0.1.0", ["deb"]);
    const [v2] = await buildTestPackages(tmp.path, "0.1.1", ["deb"]);
    await using box = await payloadContainer(platform.caCertPem);
    const [deb1, deb2] = await copyPackages(box, [v1!, v2!]);
    const dpkg = (...args: string[]) => box.sh(`dpkg ${args.join(" ")} </dev/null`, { env: ENV });
    const watch = heartbeatWatch(platform);
    const enroll = async () => {
      await box.sh(
        `oneconnect-agent enroll --url ${url} --ca-file ${CA_IN_CONTAINER} --token-file -`,
        { env: ENV, stdin: platform.mintEnrollmentToken() },
      );
      return JSON.parse(await box.sh(`cat ${STATE}/identity.json`)).agent_id as string;
    };

    await t.step("install without provisioning: enabled, not started, state 0700", async () => {
      await dpkg("-i", deb1!);
      const s = await unitState(box);
      assert.equal(s.UnitFileState, "enabled");
      assert.equal(s.ActiveState, "inactive");
      assert.equal((await box.sh(`stat -c %a:%U ${STATE}`)).trim(), "700:root");
      assert.equal(await box.sh("cat /etc/oneconnect-agent/agent.json"), "{}\n");
    });

    await t.step("enrolled by hand and started: active under the hardened unit", async () => {
      watch.agentId = await enroll();
      await box.sh("systemctl start oneconnect-agent.service");
      await watch.after(0);
      const s = await unitState(box);
      assert.equal(s.ActiveState, "active");
      // Enforced by the real systemd: no new privileges, no capabilities, a seccomp filter,
      // everything read-only but the state (and cache) directory.
      const status = await box.sh(`cat /proc/${s.MainPID}/status`);
      assert.match(status, /^NoNewPrivs:\s+1$/m);
      assert.match(status, /^CapEff:\s+0+$/m);
      assert.match(status, /^Seccomp:\s+2$/m);
      const mounts = await box.sh(`cat /proc/${s.MainPID}/mountinfo`);
      assert.match(mounts, /^\d+ \d+ \S+ \S+ \/ ro[, ]/m, "ProtectSystem=strict: / read-only");
      assert.match(mounts, / \/var\/lib\/oneconnect-agent rw[, ]/);
      assert.equal((await processEnv(box, s.MainPID!)).ONECONNECT_LAUNCHER_LABEL, "0.1.0");
    });

    // The operator's edit of the conffile (a key the agent accepts).
    const edited = '{ "log_level": "info" }\n';
    await box.writeFile(CONFIG_FILE, edited);

    for (const [deb, label] of [[deb1!, "0.1.0"], [deb2!, "0.1.1"]] as const) {
      await t.step(
        `upgrade to ${label}: same agent, restarted once, sequence continues`,
        async () => {
          await assertUpgradedOnce(box, watch, label, edited, () => dpkg("-i", deb));
          assert.equal(platform.agents().length, 1);
        },
      );
    }

    await t.step("remove: stopped and disabled, identity kept", async () => {
      await dpkg("-r", "oneconnect-agent");
      const s = await unitState(box);
      assert.equal(s.ActiveState, "inactive");
      assert.notEqual(s.UnitFileState, "enabled");
      assert.equal(
        (await box.exec(["sh", "-c", "ls /etc/systemd/system/*.wants | grep oneconnect"])).stdout,
        "",
      );
      assert.equal((await box.exec(["pgrep", "-f", "bundle/main.js"])).stdout, "");
      assert.equal(JSON.parse(await box.sh(`cat ${STATE}/identity.json`)).agent_id, watch.agentId);
    });

    await t.step("reinstall resumes as the same agent", async () => {
      await assertResumes(box, platform, watch, () => dpkg("-i", deb2!));
    });

    await t.step(
      "purge: unenrolled at the platform, identity and configuration deleted",
      async () => {
        await dpkg("-P", "oneconnect-agent");
        await assertPurged(box, platform, watch.agentId);
      },
    );

    await t.step(
      "purge with a platform that does not answer neither blocks nor fails",
      async () => {
        await dpkg("-i", deb2!);
        watch.agentId = await enroll();
        forward.blackHole = true;
        const start = performance.now();
        await dpkg("-P", "oneconnect-agent");
        const seconds = (performance.now() - start) / 1000;
        assert.ok(seconds < PURGE_UNENROLL_SECONDS + 5, `purge took ${seconds} s`);
        assert.equal((await box.exec(["test", "-e", STATE])).code, 1);
        // The platform never heard of it: the agent is still there, not deleted.
        assert.equal(platform.agents().find((a) => a.agent_id === watch.agentId)?.deleted, false);
      },
    );
  },
});
