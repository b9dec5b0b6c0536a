/**
 * Bench figure of issue 29: `dpkg -i` of the .deb with a provisioned token (ONECONNECT_* in
 * dpkg's environment) to the first heartbeat the platform accepts, under a real systemd (PID 1
 * in a systemd-nspawn container, tests/_support/systemd_container.ts). Each run purges first, so
 * every install enrolls a new agent. The payload is the test launcher (the bundled agent run by
 * deno with the binaries' permission flags), as in the package tests.
 *
 * @module
 */
import type { DevPlatform } from "../dev_platform/server.ts";
import { systemdContainerUnavailable } from "../../tests/_support/systemd_container.ts";
import {
  buildTestPackages,
  CA_IN_CONTAINER,
  copyPackages,
  payloadContainer,
} from "../../tests/_support/package_fixture.ts";

/** Seconds from `dpkg -i` to the first accepted heartbeat, per run; null when no container can run. */
export async function measureProvisionedInstall(
  platform: DevPlatform,
  runs: number,
): Promise<{ seconds: number[] } | { unavailable: string }> {
  const unavailable = systemdContainerUnavailable();
  if (unavailable) return { unavailable };
  const tmp = await Deno.makeTempDir({ prefix: "oneconnect-bench-install-" });
  try {
    const [deb] = await buildTestPackages(tmp, "0.1.0", ["deb"]);
    await using box = await payloadContainer(platform.caCertPem);
    const [inside] = await copyPackages(box, [deb!]);
    const seconds: number[] = [];
    for (let i = 0; i < runs; i++) {
      const seen = platform.heartbeats().length;
      const start = Date.now();
      const install = await box.exec(["sh", "-c", `dpkg -i ${inside} </dev/null`], {
        env: {
          HOME: "/root",
          ONECONNECT_PLATFORM_URL: platform.url.href,
          ONECONNECT_CA_FILE: CA_IN_CONTAINER,
          ONECONNECT_ENROLLMENT_TOKEN: platform.mintEnrollmentToken(),
        },
      });
      if (install.code !== 0) throw new Error(`dpkg -i failed: ${install.stderr}`);
      const deadline = Date.now() + 60_000;
      while (platform.heartbeats().length <= seen) {
        if (Date.now() > deadline) throw new Error("no heartbeat 60 s after dpkg -i");
        await new Promise((r) => setTimeout(r, 10));
      }
      seconds.push((Date.parse(platform.heartbeats()[seen]!.received_at) - start) / 1000);
      await box.sh("dpkg -P oneconnect-agent </dev/null", { env: { HOME: "/root" } });
    }
    return { seconds };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
