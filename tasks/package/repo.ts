/**
 * `deno task package --repo`: lays out, next to the packages, the repositories operators add:
 *
 * - `apt/`: `pool/main/*.deb`, `dists/stable/main/binary-{amd64,arm64}/Packages{,.gz}` written by
 *   `apt-ftparchive`, and `Release` signed by `gpg` (`InRelease` and `Release.gpg`);
 * - `rpm/`: the .rpm files (each signed with `rpmsign`), `repodata/` by `createrepo_c`,
 *   `repodata/repomd.xml.asc` signed by `gpg`, and `oneconnect-agent.repo` for dnf;
 * - `oneconnect-agent.asc`: the public key both are signed with.
 *
 * The key comes from GNUPGHOME (release machine); tests generate a throwaway one.
 *
 * @module
 */
import { gzipSync } from "node:zlib";
import { basename, join } from "node:path";
import { LINUX_ARCHES, PACKAGE_NAME, SUMMARY } from "./layout.ts";
import { run } from "./run.ts";

/** The apt suite and component. */
export const APT_SUITE = "stable";
/** The apt component. */
export const APT_COMPONENT = "main";
/** The public key file at the repository root. */
export const KEY_FILE = `${PACKAGE_NAME}.asc`;
/** Where the repositories are published (the .repo file's baseurl); `--repo-url` overrides it. */
export const DEFAULT_REPO_URL = "https://packages.oneconnect.example/oneconnect";

/** Inputs of {@linkcode buildRepos}. */
export interface RepoOptions {
  outDir: string;
  /** The package files to publish. */
  packages: string[];
  /** gpg key id (in GNUPGHOME) that signs the repositories. */
  key: string;
  /** Where `outDir` will be served from. */
  baseUrl?: string;
  /** The gpg home holding `key` (default: GNUPGHOME, else ~/.gnupg). */
  gnupgHome?: string;
}

async function reset(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
}

/** Builds both repositories; returns one progress line per step. */
export async function buildRepos(o: RepoOptions): Promise<string[]> {
  const lines: string[] = [];
  const baseUrl = (o.baseUrl ?? DEFAULT_REPO_URL).replace(/\/$/, "");
  const home = o.gnupgHome === undefined ? [] : ["--homedir", o.gnupgHome];
  const gpg = ["gpg", ...home, "--batch", "--yes", "--local-user", o.key];
  await Deno.writeTextFile(
    join(o.outDir, KEY_FILE),
    await run(["gpg", ...home, "--batch", "--armor", "--export", o.key]),
  );

  const apt = join(o.outDir, "apt");
  await reset(apt);
  const pool = join(apt, "pool", APT_COMPONENT);
  await Deno.mkdir(pool, { recursive: true });
  for (const p of o.packages.filter((p) => p.endsWith(".deb"))) {
    await Deno.copyFile(p, join(pool, basename(p)));
  }
  const dist = join(apt, "dists", APT_SUITE);
  for (const arch of LINUX_ARCHES) {
    const dir = join(dist, APT_COMPONENT, `binary-${arch.deb}`);
    await Deno.mkdir(dir, { recursive: true });
    // Paths in Packages are relative to the repository root (apt/).
    const packages = await run(["apt-ftparchive", "--arch", arch.deb, "packages", "pool"], apt);
    await Deno.writeTextFile(join(dir, "Packages"), packages);
    await Deno.writeFile(join(dir, "Packages.gz"), gzipSync(new TextEncoder().encode(packages)));
  }
  const release = await run([
    "apt-ftparchive",
    "-o",
    "APT::FTPArchive::Release::Origin=OneConnect",
    "-o",
    `APT::FTPArchive::Release::Label=${SUMMARY}`,
    "-o",
    `APT::FTPArchive::Release::Suite=${APT_SUITE}`,
    "-o",
    `APT::FTPArchive::Release::Codename=${APT_SUITE}`,
    "-o",
    `APT::FTPArchive::Release::Architectures=${LINUX_ARCHES.map((a) => a.deb).join(" ")}`,
    "-o",
    `APT::FTPArchive::Release::Components=${APT_COMPONENT}`,
    "release",
    ".",
  ], dist);
  await Deno.writeTextFile(join(dist, "Release"), release);
  await run([...gpg, "--clearsign", "-o", join(dist, "InRelease"), join(dist, "Release")]);
  await run([
    ...gpg,
    "--armor",
    "--detach-sign",
    "-o",
    join(dist, "Release.gpg"),
    join(dist, "Release"),
  ]);
  lines.push(`Wrote the apt repository ${apt} (Release signed by ${o.key})`);

  const rpm = join(o.outDir, "rpm");
  await reset(rpm);
  const rpms = o.packages.filter((p) => p.endsWith(".rpm"));
  for (const p of rpms) await Deno.copyFile(p, join(rpm, basename(p)));
  if (rpms.length > 0) {
    await run([
      "rpmsign",
      "--define",
      `_gpg_name ${o.key}`,
      // Debian's rpm looks for gpg2, a name other distributions no longer ship.
      "--define",
      "__gpg /usr/bin/gpg",
      ...(o.gnupgHome === undefined ? [] : ["--define", `_gpg_path ${o.gnupgHome}`]),
      "--addsign",
      ...rpms.map((p) => join(rpm, basename(p))),
    ]);
  }
  await run(["createrepo_c", "--quiet", rpm]);
  const repomd = join(rpm, "repodata", "repomd.xml");
  await run([...gpg, "--armor", "--detach-sign", "-o", `${repomd}.asc`, repomd]);
  await Deno.writeTextFile(
    join(rpm, `${PACKAGE_NAME}.repo`),
    [
      `[${PACKAGE_NAME}]`,
      `name=${SUMMARY}`,
      `baseurl=${baseUrl}/rpm`,
      "enabled=1",
      "gpgcheck=1",
      "repo_gpgcheck=1",
      `gpgkey=${baseUrl}/${KEY_FILE}`,
      "",
    ].join("\n"),
  );
  lines.push(`Wrote the dnf repository ${rpm} (packages and repomd.xml signed by ${o.key})`);
  return lines;
}
