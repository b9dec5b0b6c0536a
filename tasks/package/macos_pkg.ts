/**
 * The macOS installer package recipe (arm64): stages the payload (the binary at
 * /usr/local/bin/oneconnect-agent, the LaunchDaemon), the pre/postinstall scripts and the
 * hardened-runtime entitlements, and lists the commands that sign, build, notarize and staple it.
 * `macosPkgPlan` is the dry run (any host); `runMacosPkgPlan` executes the plan on a Mac with the
 * Developer ID certificates in its keychain and a notarytool keychain profile.
 */
import { join, resolve } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;
/** Where the binary is installed (macOS keeps /usr/bin for the system: SIP). */
export const MACOS_BINARY_PATH = "/usr/local/bin/oneconnect-agent";
/** The LaunchDaemon's label, also the package identifier. */
export const MACOS_LABEL = "com.oneconnect.agent";

/** Signing identities (codesign and productbuild match a unique substring of the name). */
export interface MacosSigning {
  application: string;
  installer: string;
  /** `xcrun notarytool store-credentials` profile name. */
  notaryProfile: string;
}

/** Defaults: the Developer ID certificates of the keychain, the profile "oneconnect-notary". */
export const DEFAULT_SIGNING: MacosSigning = {
  application: "Developer ID Application",
  installer: "Developer ID Installer",
  notaryProfile: "oneconnect-notary",
};

/** The staged files and the commands, in order, that turn them into a notarized package. */
export interface MacosPkgPlan {
  files: string[];
  commands: string[][];
}

async function stage(from: string, to: string, mode: number): Promise<string> {
  await Deno.mkdir(join(to, ".."), { recursive: true });
  await Deno.copyFile(from, to);
  await Deno.chmod(to, mode);
  return to;
}

/**
 * Stages the package's inputs under `<outDir>/macos-pkg-<version>/` and returns them with the
 * commands that build `<outDir>/oneconnect-agent_<version>_arm64.pkg`.
 */
export async function macosPkgPlan(
  o: { version: string; binary: string; outDir: string; signing?: MacosSigning },
): Promise<MacosPkgPlan> {
  const signing = o.signing ?? DEFAULT_SIGNING;
  const work = resolve(o.outDir, `macos-pkg-${o.version}`);
  await Deno.remove(work, { recursive: true }).catch(() => {});
  const root = join(work, "root");
  const scripts = join(work, "scripts");
  const binary = join(root, MACOS_BINARY_PATH);
  const entitlements = join(work, "entitlements.plist");
  const files = [
    await stage(o.binary, binary, 0o755),
    await stage(
      join(ROOT, "packaging/launchd/com.oneconnect.agent.plist"),
      join(root, "Library/LaunchDaemons", `${MACOS_LABEL}.plist`),
      0o644,
    ),
    await stage(join(ROOT, "packaging/macos/preinstall"), join(scripts, "preinstall"), 0o755),
    await stage(join(ROOT, "packaging/macos/postinstall"), join(scripts, "postinstall"), 0o755),
    await stage(join(ROOT, "packaging/macos/entitlements.plist"), entitlements, 0o644),
  ];
  const component = join(work, `oneconnect-agent-component.pkg`);
  const product = resolve(o.outDir, `oneconnect-agent_${o.version}_arm64.pkg`);
  const commands = [
    // Hardened runtime (notarization requires it) with the JIT exceptions V8 needs; a secure
    // timestamp, also required.
    [
      "codesign",
      "--force",
      "--timestamp",
      "--options",
      "runtime",
      "--entitlements",
      entitlements,
      "--sign",
      signing.application,
      binary,
    ],
    ["codesign", "--verify", "--strict", "--verbose=2", binary],
    [
      "pkgbuild",
      "--root",
      root,
      "--scripts",
      scripts,
      "--identifier",
      MACOS_LABEL,
      "--version",
      o.version,
      "--install-location",
      "/",
      component,
    ],
    ["productbuild", "--package", component, "--sign", signing.installer, product],
    [
      "xcrun",
      "notarytool",
      "submit",
      product,
      "--keychain-profile",
      signing.notaryProfile,
      "--wait",
    ],
    ["xcrun", "stapler", "staple", product],
    ["pkgutil", "--check-signature", product],
  ];
  return { files, commands };
}

/** Runs a plan's commands in order on a Mac; the first failure stops it. */
export async function runMacosPkgPlan(plan: MacosPkgPlan): Promise<void> {
  if (Deno.build.os !== "darwin") {
    throw new Error("The macOS package is signed and notarized on a Mac (codesign, xcrun)");
  }
  for (const [command, ...args] of plan.commands) {
    const status = await new Deno.Command(command!, { args }).spawn().status;
    if (!status.success) throw new Error(`${command} failed (exit ${status.code})`);
  }
}
