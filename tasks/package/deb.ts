/**
 * Builds the .deb with Debian's own `dpkg-deb` from a staged tree: the payload of
 * {@linkcode payloadFiles}, the documentation Debian policy asks for (copyright, changelog), the
 * lintian overrides whose reasons docs/packages.md gives, and DEBIAN/ (control, conffiles,
 * md5sums, maintainer scripts).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import {
  foldDescription,
  HOMEPAGE,
  type LinuxArch,
  MAINTAINER,
  PACKAGE_NAME,
  packageVersion,
  type PayloadFile,
  SUMMARY,
} from "./layout.ts";
import { debScripts } from "./scripts.ts";
import { run } from "./run.ts";

/** Inputs of {@linkcode buildDeb}. */
export interface DebOptions {
  version: string;
  arch: LinuxArch;
  files: PayloadFile[];
  outDir: string;
  /** The changelog's date (RFC 2822); from SOURCE_DATE_EPOCH for reproducible builds. */
  date: Date;
  /** Whether the payload is the ELF binary of build-all (not a test launcher script). */
  elf: boolean;
}

/** The file name dpkg tooling expects: `name_version_arch.deb`. */
export function debFileName(version: string, arch: LinuxArch): string {
  return `${PACKAGE_NAME}_${packageVersion(version)}_${arch.deb}.deb`;
}

/** The control file's description: summary, then continuation lines starting with a space. */
function controlDescription(): string {
  return `${SUMMARY}\n${foldDescription().map((l) => ` ${l}`).join("\n")}`;
}

function rfc2822(date: Date): string {
  return date.toUTCString().replace("GMT", "+0000");
}

/** Lintian overrides shipped in the package; each reason is in docs/packages.md. */
export function lintianOverrides(): string[] {
  // Configured through `oneconnect-agent --help` and docs/; no manual page is shipped.
  return ["no-manual-page [usr/bin/oneconnect-agent]"];
}

/** Stages and builds the .deb into `outDir`; returns its path. */
export async function buildDeb(o: DebOptions): Promise<string> {
  // Staged inside the output directory (its file system; removed whatever happens).
  await Deno.mkdir(o.outDir, { recursive: true });
  const stage = await Deno.makeTempDir({ dir: o.outDir, prefix: ".oneconnect-deb-" });
  try {
    const version = packageVersion(o.version);
    const doc = `/usr/share/doc/${PACKAGE_NAME}`;
    const enc = new TextEncoder();
    const files: PayloadFile[] = [
      ...o.files,
      {
        path: `${doc}/changelog.gz`,
        mode: 0o644,
        // -n: no name or time stamp in the gzip header, as dh_compress does.
        data: gzipSync(
          enc.encode(
            `${PACKAGE_NAME} (${version}) stable; urgency=medium\n\n  * Release ${o.version}.\n\n -- ${MAINTAINER}  ${
              rfc2822(o.date)
            }\n`,
          ),
          { level: 9 },
        ),
      },
      {
        path: `/usr/share/lintian/overrides/${PACKAGE_NAME}`,
        mode: 0o644,
        data: enc.encode(lintianOverrides().map((l) => `${PACKAGE_NAME}: ${l}\n`).join("")),
      },
    ];
    let installedBytes = 0;
    const md5: string[] = [];
    for (const f of files) {
      const target = join(stage, f.path);
      await Deno.mkdir(dirname(target), { recursive: true });
      await Deno.writeFile(target, f.data);
      await Deno.chmod(target, f.mode);
      installedBytes += f.data.length;
      if (!f.config) {
        md5.push(`${createHash("md5").update(f.data).digest("hex")}  ${f.path.slice(1)}`);
      }
    }
    // dpkg-deb keeps the staged directory modes: 0755 as Debian expects, whatever our umask.
    await run(["find", stage, "-type", "d", "-exec", "chmod", "0755", "{}", "+"]);
    const debian = join(stage, "DEBIAN");
    await Deno.mkdir(debian, { mode: 0o755 });
    const control = [
      `Package: ${PACKAGE_NAME}`,
      `Version: ${version}`,
      `Architecture: ${o.arch.deb}`,
      `Maintainer: ${MAINTAINER}`,
      `Installed-Size: ${Math.ceil(installedBytes / 1024)}`,
      // The compiled binary links glibc dynamically; the scripts use coreutils' timeout (essential).
      ...(o.elf ? ["Depends: libc6 (>= 2.28)"] : []),
      "Section: admin",
      "Priority: optional",
      `Homepage: ${HOMEPAGE}`,
      `Description: ${controlDescription()}`,
      "",
    ].join("\n");
    await Deno.writeTextFile(join(debian, "control"), control);
    await Deno.writeTextFile(
      join(debian, "conffiles"),
      files.filter((f) => f.config).map((f) => `${f.path}\n`).join(""),
    );
    await Deno.writeTextFile(join(debian, "md5sums"), `${md5.join("\n")}\n`);
    for (const [name, text] of Object.entries(debScripts())) {
      await Deno.writeTextFile(join(debian, name), text);
      await Deno.chmod(join(debian, name), 0o755);
    }
    for (const name of ["control", "conffiles", "md5sums"]) {
      await Deno.chmod(join(debian, name), 0o644);
    }
    await Deno.mkdir(o.outDir, { recursive: true });
    const out = join(o.outDir, debFileName(o.version, o.arch));
    // --root-owner-group: every file root:root without fakeroot.
    await run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, out]);
    return out;
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}
