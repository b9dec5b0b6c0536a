/**
 * The Windows x64 MSI: wixl (Debian's msitools) builds packaging/windows/oneconnect-agent.wxs,
 * then msibuild SQL sets what wixl 0.101 cannot express (it ignores MajorUpgrade's Schedule,
 * CustomAction's HideTarget, Custom's Before/After between custom actions, and Property's
 * Secure): exact sequence numbers, the HideTarget bit, and SecureCustomProperties.
 */
import { join, resolve } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;
const WINDOWS_DIR = join(ROOT, "packaging/windows");
/** The WinSW service host packaged as oneconnect-agent-service.exe, unless another is given. */
export const DEFAULT_WINSW = join(WINDOWS_DIR, "WinSW-x64.exe");

/** Public properties an administrator may pass to msiexec (all reach the elevated server side). */
export const MSI_PROPERTIES = ["PLATFORM_URL", "CA_FILE", "CA_PIN", "ENROLLMENT_TOKEN", "PURGE"];

/** Custom action types: JScript in the Binary table (5), deferred, no impersonation, hidden. */
const JSCRIPT = 5, DEFERRED = 0x400, NO_IMPERSONATE = 0x800, HIDE_TARGET = 0x2000, CONTINUE = 0x40;
/** Types of the deferred actions after the fix-up (tests read them back with msiinfo). */
export const ACTION_TYPES = {
  ProvisionAgent: JSCRIPT | DEFERRED | NO_IMPERSONATE | HIDE_TARGET,
  PurgeAgent: JSCRIPT | DEFERRED | NO_IMPERSONATE | CONTINUE,
} as const;

/**
 * InstallExecuteSequence numbers: the old version is removed right after InstallValidate (inside
 * the transaction: a failed upgrade rolls back to it), purge runs once the service is stopped
 * and before the files go, provision once the files are there and before the service starts.
 */
export const SEQUENCE = {
  RemoveExistingProducts: 1401,
  SetPurgeAgent: 1910,
  PurgeAgent: 1920,
  SetProvisionAgent: 4005,
  ProvisionAgent: 4010,
} as const;

/** MSI ProductVersion: major.minor.build, numbers only (a pre-release suffix is dropped). */
export function msiVersion(version: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(version);
  if (!m || Number(m[1]) > 255 || Number(m[2]) > 255 || Number(m[3]) > 65535) {
    throw new Error(`Cannot build an MSI for version ${JSON.stringify(version)}: expected a.b.c`);
  }
  return `${m[1]}.${m[2]}.${m[3]}`;
}

async function run(command: string, args: string[], cwd?: string): Promise<void> {
  const out = await new Deno.Command(command, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${command} failed (${out.code}): ${dec.decode(out.stderr).trim() || dec.decode(out.stdout)}`,
    );
  }
}

/** Builds `oneconnect-agent_<version>_x64.msi` in `outDir` from the Windows binary; returns its path. */
export async function buildMsi(
  o: { version: string; binary: string; outDir: string; winsw?: string },
): Promise<string> {
  const version = msiVersion(o.version);
  const winsw = o.winsw ?? DEFAULT_WINSW;
  try {
    await Deno.stat(winsw);
  } catch {
    throw new Error(
      `Cannot build the MSI: no WinSW service host at ${
        JSON.stringify(winsw)
      }; put WinSW-x64.exe (v2, github.com/winsw/winsw releases) there`,
    );
  }
  const stage = await Deno.makeTempDir({ prefix: "oneconnect-msi-" });
  try {
    await Deno.copyFile(o.binary, join(stage, "oneconnect-agent.exe"));
    await Deno.copyFile(winsw, join(stage, "oneconnect-agent-service.exe"));
    await Deno.copyFile(
      join(WINDOWS_DIR, "oneconnect-agent.xml"),
      join(stage, "oneconnect-agent-service.xml"),
    );
    // wixl takes source files relative to its working directory: everything in one folder.
    for (const name of ["msi_actions.js", "oneconnect-agent.wxs"]) {
      await Deno.copyFile(join(WINDOWS_DIR, name), join(stage, name));
    }
    await Deno.mkdir(o.outDir, { recursive: true });
    const msi = resolve(o.outDir, `oneconnect-agent_${o.version}_x64.msi`);
    await run("wixl", [
      "-a",
      "x64",
      "-D",
      `Version=${version}`,
      "-o",
      msi,
      "oneconnect-agent.wxs",
    ], stage);
    const queries = [
      ...Object.entries(SEQUENCE).map(([action, n]) =>
        `UPDATE InstallExecuteSequence SET Sequence = ${n} WHERE Action = '${action}'`
      ),
      ...Object.entries(ACTION_TYPES).map(([action, type]) =>
        `UPDATE CustomAction SET Type = ${type} WHERE Action = '${action}'`
      ),
      `UPDATE Property SET Value = 'WIX_DOWNGRADE_DETECTED;WIX_UPGRADE_DETECTED;${
        MSI_PROPERTIES.join(";")
      }' WHERE Property = 'SecureCustomProperties'`,
    ];
    await run("msibuild", [msi, ...queries.flatMap((q) => ["-q", q])]);
    return msi;
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}
