/**
 * What the Linux packages install and where: one list both the .deb and the .rpm are built from,
 * and the names, versions and architectures of the packages (derived from deno.json's version and
 * tasks/build_all.ts's targets, the one place each is defined).
 *
 * @module
 */
import { join } from "node:path";

/** The package name on every platform. */
export const PACKAGE_NAME = "oneconnect-agent";
/** The installed executable. Nothing is installed under /usr/local. */
export const BIN_PATH = "/usr/bin/oneconnect-agent";
/** Where systemd units shipped by packages live. */
export const UNIT_DIR = "/usr/lib/systemd/system";
/** The main service unit. */
export const SERVICE_UNIT = "oneconnect-agent.service";
/** The path unit that starts the service when a token is provisioned later (may be absent). */
export const ENROLL_PATH_UNIT = "oneconnect-agent-enroll.path";
/** The operator's configuration: a conffile (deb) / `%config(noreplace)` (rpm). */
export const CONFIG_PATH = "/etc/oneconnect-agent/agent.json";
/** The agent's state directory (0700, root): identity, heartbeat status, provisioned token. */
export const STATE_DIR = "/var/lib/oneconnect-agent";
/** Deno's cache directory of the service (the unit's `CacheDirectory=`). */
export const SERVICE_CACHE_DIR = "/var/cache/oneconnect-agent";
/** Where a token is provisioned (the path unit watches it). */
export const TOKEN_PATH = `${STATE_DIR}/enrollment.token`;
/** Maintainer shown in the package metadata. */
export const MAINTAINER = "OneConnect packaging <packages@oneconnect.example>";
/** Upstream home page. */
export const HOMEPAGE = "https://github.com/oneconnect/oneconnect-agent";
/** The license name in both formats' metadata. */
export const LICENSE = "Proprietary";
/** One-line summary. */
export const SUMMARY = "OneConnect endpoint agent (telemetry heartbeats)";
/** Longer description, one paragraph. */
export const DESCRIPTION =
  "The OneConnect agent enrolls this host with a OneConnect platform (its own key pair and " +
  "certificate) and reports health telemetry in heartbeats over HTTPS. It is not a remote " +
  "shell, patch manager or software deployer. Provision the platform URL, its trust and an " +
  "enrollment token at install time (ONECONNECT_PLATFORM_URL, ONECONNECT_CA_FILE or " +
  "ONECONNECT_CA_PIN, ONECONNECT_ENROLLMENT_TOKEN) or later with `oneconnect-agent provision`.";

/** {@linkcode DESCRIPTION} folded into lines of at most 78 characters (control file, spec). */
export function foldDescription(): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of DESCRIPTION.split(" ")) {
    if (line !== "" && line.length + word.length + 1 > 78) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines;
}

/** A Linux architecture in each package format's spelling, and its build-all target. */
export interface LinuxArch {
  /** tasks/build_all.ts target name. */
  target: "linux-amd64" | "linux-arm64";
  deb: "amd64" | "arm64";
  rpm: "x86_64" | "aarch64";
}

/** The Linux architectures packages are built for. */
export const LINUX_ARCHES: readonly LinuxArch[] = [
  { target: "linux-amd64", deb: "amd64", rpm: "x86_64" },
  { target: "linux-arm64", deb: "arm64", rpm: "aarch64" },
];

/** The Linux architecture of the machine running the task (what `--binary` packages for). */
export function hostLinuxArch(arch: string = Deno.build.arch): LinuxArch {
  return arch === "aarch64" ? LINUX_ARCHES[1]! : LINUX_ARCHES[0]!;
}

/**
 * Checks a release version (`1.2.3`, `1.2.3-rc.1`) and returns it; anything else is refused with
 * one line, since both formats order versions and a bad one would break upgrades.
 */
export function checkVersion(version: string): string {
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/.test(version)) {
    throw new Error(
      `Invalid version "${version}": expected MAJOR.MINOR.PATCH with an optional -prerelease (e.g. 1.2.3-rc.1)`,
    );
  }
  return version;
}

/** The version in dpkg and rpm syntax: a prerelease sorts before its release (`~`). */
export function packageVersion(version: string): string {
  return checkVersion(version).replace("-", "~");
}

/** The rpm `Release:` of every package built from one version. */
export const RPM_RELEASE = "1";

/** One file of the payload. */
export interface PayloadFile {
  /** Absolute install path. */
  path: string;
  /** The content. */
  data: Uint8Array;
  mode: number;
  /** Kept on upgrade when the operator edited it. */
  config?: boolean;
  /** Documentation (rpm `%doc`). */
  doc?: boolean;
}

/** The package's documentation directory. */
export const DOC_DIR = `/usr/share/doc/${PACKAGE_NAME}`;

/** The files every Linux package installs (docs and format-specific metadata come on top). */
export async function payloadFiles(repoRoot: string, binary: string): Promise<PayloadFile[]> {
  const files: PayloadFile[] = [
    { path: BIN_PATH, data: await Deno.readFile(binary), mode: 0o755 },
  ];
  const unitDir = join(repoRoot, "packaging/systemd");
  const units = [];
  for await (const entry of Deno.readDir(unitDir)) {
    if (entry.isFile && /\.(service|path|timer|socket)$/.test(entry.name)) units.push(entry.name);
  }
  for (const name of units.sort()) {
    files.push({
      path: `${UNIT_DIR}/${name}`,
      data: await Deno.readFile(join(unitDir, name)),
      mode: 0o644,
    });
  }
  // JSON has no comments: an empty object, which the operator (or `provision`) fills in.
  files.push({
    path: CONFIG_PATH,
    data: new TextEncoder().encode("{}\n"),
    mode: 0o644,
    config: true,
  });
  files.push({
    path: `${DOC_DIR}/copyright`,
    mode: 0o644,
    doc: true,
    data: new TextEncoder().encode(
      [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        `Upstream-Name: ${PACKAGE_NAME}`,
        `Source: ${HOMEPAGE}`,
        "",
        "Files: *",
        "Copyright: 2024-2026 OneConnect",
        `License: ${LICENSE}`,
        " All rights reserved. Distributed to OneConnect customers for their endpoints.",
        "",
      ].join("\n"),
    ),
  });
  return files;
}
