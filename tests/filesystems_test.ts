import { deepEqual, equal, ok } from "node:assert/strict";
import {
  DF_ARGS,
  parseDfOutput,
  parseMacosDf,
  parseMacosMount,
} from "../src/telemetry/filesystems.ts";
import { telemetryFixture } from "./_support/helpers.ts";

Deno.test("df output of a container keeps its root filesystem only", () => {
  deepEqual(parseDfOutput(telemetryFixture("linux_df_container.txt")), [
    ["/", "ext4", 270553174016, 270553174016 - 24208846848, 84735447040, 16777216, 16363902],
  ]);
});

Deno.test("df output of a workstation drops pseudo, image and overlay filesystems", () => {
  const mounts = parseDfOutput(telemetryFixture("linux_df_workstation.txt"));
  deepEqual(mounts.map(([mount, type]) => `${type} ${mount}`), [
    "ext4 /",
    "vfat /boot/efi",
    "btrfs /mnt/data",
    "xfs /srv/my data",
  ]);
  // Filesystems without an inode table (vfat, btrfs) report null inodes, not zero.
  deepEqual(mounts[1], ["/boot/efi", "vfat", 535805952, 529436672, 529436672, null, null]);
  deepEqual(mounts[2]!.slice(5), [null, null]);
});

Deno.test("df lines with dashes, garbage or a zero size are skipped or nulled", () => {
  const text = [
    "Type 1B-blocks Used Avail Inodes IFree Mounted on",
    "ext4 1000 - 400 10 - /a",
    "ext4 0 0 0 0 0 /empty",
    "ext4 1000 2000 0 1 1 /overfull",
    "not a df line",
    "",
  ].join("\n");
  deepEqual(parseDfOutput(text), [
    ["/a", "ext4", 1000, null, 400, 10, null],
    ["/overfull", "ext4", 1000, null, 0, 1, 1],
  ]);
});

Deno.test("the excluded filesystem types cover memory, pseudo, container and network ones", () => {
  const excluded = ["tmpfs", "proc", "sysfs", "overlay", "squashfs", "nfs4", "cifs", "9p"];
  const kept = ["ext4", "xfs", "btrfs", "vfat", "zfs", "ntfs3"];
  const text = [
    "Type 1B-blocks Used Avail Inodes IFree Mounted on",
    ...[...excluded, ...kept].map((type) => `${type} 1000 600 400 10 5 /mnt/${type}`),
  ].join("\n");
  deepEqual(parseDfOutput(text).map(([, type]) => type), kept);
  // Only local filesystems are queried, so a hung network mount cannot block df.
  ok(DF_ARGS.includes("-l"));
});

Deno.test({
  name: "df on this machine parses into the filesystems df itself lists",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const out = await new Deno.Command("/usr/bin/df", {
      args: [...DF_ARGS],
      clearEnv: true,
      stdout: "piped",
    }).output();
    equal(out.code, 0);
    const text = new TextDecoder().decode(out.stdout);
    const lines = text.trim().split("\n").slice(1);
    const mounts = parseDfOutput(text);
    ok(mounts.length > 0);
    ok(mounts.length <= lines.length);
    for (const [mount, type, total, free, avail] of mounts) {
      ok(lines.some((l) => l.startsWith(type) && l.endsWith(` ${mount}`)), mount);
      ok(total !== null && free !== null && avail !== null && avail <= free && free <= total);
    }
  },
});

Deno.test("macOS df -k -i -l joined with mount keeps /, the data volume and external disks", () => {
  const mounts = parseMacosDf(
    telemetryFixture("macos_df_kil.txt"),
    telemetryFixture("macos_mount.txt"),
  );
  deepEqual(mounts, [
    [
      "/",
      "apfs",
      482797652 * 1024,
      (482797652 - 10485504) * 1024,
      201325972 * 1024,
      404167 + 2013259720,
      2013259720,
    ],
    [
      "/System/Volumes/Data",
      "apfs",
      482797652 * 1024,
      (482797652 - 260881792) * 1024,
      201325972 * 1024,
      2181532 + 2013259720,
      2013259720,
    ],
    [
      "/Volumes/Backup Disk",
      "apfs",
      976285652 * 1024,
      (976285652 - 512339180) * 1024,
      463946472 * 1024,
      117234 + 4639464720,
      4639464720,
    ],
    [
      "/Volumes/Install macOS",
      "hfs",
      244950 * 1024,
      (244950 - 118204) * 1024,
      126746 * 1024,
      36 + 4294967243,
      4294967243,
    ],
  ]);
});

Deno.test("macOS mount lines give type and options; df rows mount does not list are left out", () => {
  deepEqual(
    parseMacosMount("map auto_home on /System/Volumes/Data/home (autofs, automounted, nobrowse)"),
    new Map([["/System/Volumes/Data/home", {
      type: "autofs",
      options: ["automounted", "nobrowse"],
    }]]),
  );
  const df = "Filesystem 1024-blocks Used Available Capacity iused ifree %iused  Mounted on\n" +
    "/dev/disk9s1 1000 100 900 10% 5 95 5% /Volumes/New\n";
  deepEqual(parseMacosDf(df, ""), []);
  deepEqual(parseMacosDf(df, "/dev/disk9s1 on /Volumes/New (msdos, local)\n"), [
    ["/Volumes/New", "msdos", 1024000, 921600, 921600, 100, 95],
  ]);
  deepEqual(parseMacosDf("not df\n" + "garbage line\n", "/dev/x on / (apfs, local)"), []);
});
