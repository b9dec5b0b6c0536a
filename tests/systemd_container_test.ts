import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, skipWithout } from "./_support/helpers.ts";
import {
  bootContainer,
  ensureRootfs,
  systemdContainerUnavailable,
} from "./_support/systemd_container.ts";

const UNAVAILABLE = systemdContainerUnavailable();
if (UNAVAILABLE) console.warn(`SKIPPING systemd container tests: ${UNAVAILABLE}`);

Deno.test({
  name: "systemd container boots a real systemd as PID 1 on a throwaway overlay and cleans up",
  ignore: skipWithout(UNAVAILABLE === null),
  sanitizeResources: false,
  async fn() {
    const rootfs = await ensureRootfs();
    let root = "";
    let name = "";
    let pid = 0;
    {
      await using box = await bootContainer();
      ({ root, name, pid } = box);
      // PID 1 inside is systemd, and it manages units.
      assert.equal((await box.sh("cat /proc/1/comm")).trim(), "systemd");
      assert.equal((await box.sh("systemctl is-system-running")).trim(), "running");
      assert.equal((await box.sh("hostname")).trim(), name);
      // A file the host writes into the root is seen inside (not under /tmp: a tmpfs there).
      await box.writeFile("/var/tmp/probe", "from host\n");
      assert.equal(await box.sh("cat /var/tmp/probe"), "from host\n");
      // A transient unit runs and its exit status is reported: systemd really supervises.
      await box.sh("systemd-run --wait --quiet --unit probe-ok true");
      const failed = await box.exec([
        "systemd-run",
        "--wait",
        "--quiet",
        "--unit",
        "probe-no",
        "false",
      ]);
      assert.notEqual(failed.code, 0);
      // The caller's environment does not leak in.
      assert.equal((await box.exec(["sh", "-c", "echo ${HOME-unset}"])).stdout.trim(), "unset");
      await box.sh("touch /etc/written-by-test");
      assert.ok(await exists(join(root, "etc/written-by-test")));
    }
    // The cached tree is untouched; the overlay, the container and its cgroups are gone.
    assert.equal(await exists(join(rootfs, "etc/written-by-test")), false);
    assert.equal(await exists(root), false);
    assert.equal(await exists(`/proc/${pid}`), false);
    assert.equal(await exists(`/sys/fs/cgroup/systemd/oneconnect-ci-${name}`), false);
    assert.equal(await exists(`/sys/fs/cgroup/unified/oneconnect-ci-${name}`), false);
  },
});
