import assert from "node:assert/strict";
import { startDevPlatform } from "../tasks/dev_platform/server.ts";
import { skipWithout, tempDir, until } from "./_support/helpers.ts";
import { systemdContainerUnavailable } from "./_support/systemd_container.ts";
import {
  buildTestPackages,
  CA_IN_CONTAINER,
  copyPackages,
  payloadContainer,
  unitState,
} from "./_support/package_fixture.ts";

const UNAVAILABLE = systemdContainerUnavailable();
if (UNAVAILABLE) console.warn(`SKIPPING provisioned install tests: ${UNAVAILABLE}`);

const STATE = "/var/lib/oneconnect-agent";

Deno.test({
  name:
    "provisioned install: a refused value warns, a golden image enrolls when provisioned later, dpkg -i with a token heartbeats",
  ignore: skipWithout(UNAVAILABLE === null),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using platform = await startDevPlatform({ quiet: true });
    await using tmp = await tempDir();
    const [deb] = await buildTestPackages(tmp.path, "0.1.0", ["deb"]);
    await using box = await payloadContainer(platform.caCertPem);
    const [inside] = await copyPackages(box, [deb!]);
    const provisioning = (token: string) => ({
      HOME: "/root",
      ONECONNECT_PLATFORM_URL: platform.url.href,
      ONECONNECT_CA_FILE: CA_IN_CONTAINER,
      ONECONNECT_ENROLLMENT_TOKEN: token,
    });
    const dpkgOut = async (args: string, env: Record<string, string>) => {
      const r = await box.exec(["sh", "-c", `dpkg ${args} </dev/null 2>&1`], { env });
      assert.equal(r.code, 0, r.stdout);
      return r.stdout;
    };
    const agents = () => platform.agents().filter((a) => !a.deleted);

    await t.step("a refused value: one warning, the install succeeds, nothing stored", async () => {
      const token = platform.mintEnrollmentToken();
      const out = await dpkgOut(`-i ${inside}`, {
        ...provisioning(token),
        ONECONNECT_PLATFORM_URL: "ftp://platform.example",
      });
      assert.match(out, /ONECONNECT_PLATFORM_URL/);
      assert.match(out, /provisioning failed/);
      assert.ok(!out.includes(token), "the token is never printed");
      assert.equal((await box.exec(["test", "-e", `${STATE}/enrollment.token`])).code, 1);
      assert.equal((await unitState(box)).ActiveState, "inactive");
      await dpkgOut("-P oneconnect-agent", { HOME: "/root" });
    });

    await t.step(
      "golden image: installed without a token, provisioned later, runs without a reboot",
      async () => {
        await dpkgOut(`-i ${inside}`, { HOME: "/root" });
        assert.equal((await unitState(box)).ActiveState, "inactive");
        assert.equal((await unitState(box, "oneconnect-agent-enroll.path")).ActiveState, "active");
        const token = platform.mintEnrollmentToken();
        const out = await box.exec(["oneconnect-agent", "provision"], { env: provisioning(token) });
        assert.equal(out.code, 0, out.stderr);
        assert.ok(!`${out.stdout}${out.stderr}`.includes(token));
        // The path unit sees the token and starts the service, which enrolls, then heartbeats.
        await until(() => platform.heartbeats().length > 0, "the first heartbeat", 30_000);
        assert.equal(agents().length, 1);
        assert.equal((await unitState(box)).ActiveState, "active");
        await until(
          async () => (await box.exec(["test", "-e", `${STATE}/enrollment.token`])).code === 1,
          "the token deleted after enrolling",
        );
        await dpkgOut("-P oneconnect-agent", { HOME: "/root" });
        assert.equal(agents().length, 0, "purge unenrolled it");
      },
    );

    await t.step(
      "ONECONNECT_* given to dpkg -i: enrolled and heartbeating within seconds",
      async () => {
        const token = platform.mintEnrollmentToken();
        const seen = platform.heartbeats().length;
        const start = Date.now();
        const out = await dpkgOut(`-i ${inside}`, provisioning(token));
        assert.ok(!out.includes(token), "the token is never printed");
        await until(() => platform.heartbeats().length > seen, "the first heartbeat", 30_000);
        const first = platform.heartbeats()[seen]!;
        const seconds = (Date.parse(first.received_at) - start) / 1000;
        console.log(`dpkg -i with a provisioned token -> first accepted heartbeat: ${seconds} s`);
        assert.equal(agents().length, 1);
        const config = JSON.parse(await box.sh("cat /etc/oneconnect-agent/agent.json"));
        assert.equal(config.platform_url, platform.url.href);
        assert.equal(config.ca_file, CA_IN_CONTAINER);
        const s = await unitState(box);
        assert.equal(s.ActiveState, "active");
        assert.equal(s.UnitFileState, "enabled");
      },
    );
  },
});
