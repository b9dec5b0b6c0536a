/**
 * Windows protection of the state directory: owned by Administrators, no inherited entries, only
 * SYSTEM and Administrators in its ACL, checked by reading the ACL back (`icacls` output parsed),
 * never assumed from a command's exit code. The folder is created with that ACL in one call
 * (never with inherited entries first), and the files in it are audited too. A folder someone else
 * created first (any user may create folders under ProgramData) is refused: its owner could have
 * kept an open handle, planted files or granted itself access again.
 */
import { runChild } from "../child_process.ts";
import { errorMessage, UsageError } from "../errors.ts";

/** Absolute path of icacls, as allowed in `tasks/permissions.flags` (never looked up via PATH). */
export const ICACLS_PATH = "C:\\Windows\\System32\\icacls.exe";
/** Absolute path of Windows PowerShell 5.1, used only to read owners as SIDs. */
export const POWERSHELL_PATH = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe";

/** Runs a program (absolute path, cleared environment) and reports how it ended (a seam). */
export type CommandRunner = (
  command: string,
  args: string[],
  env?: Record<string, string>,
) => Promise<{ success: boolean; stdout?: string; stderr: string }>;

/** The real command runner: {@linkcode runChild}, so the child gets a cleared environment. */
export const denoCommandRunner: CommandRunner = (command, args, env) =>
  runChild(command, args, { env });

/** SYSTEM's SID. */
const SYSTEM_SID = "S-1-5-18";
/** BUILTIN\Administrators' SID. */
const ADMINISTRATORS_SID = "S-1-5-32-544";
/** NT SERVICE\TrustedInstaller, the owner of many system folders (acceptable above the state). */
const TRUSTED_INSTALLER_SID = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464";

/** One access control entry as icacls prints it: `principal:(flags)(rights)`. */
export interface AclEntry {
  principal: string;
  /** The parenthesised groups in order, e.g. `["OI", "CI", "F"]`. */
  flags: string[];
  inherited: boolean;
  deny: boolean;
}

/** Who a principal printed by icacls is; anything not recognised exactly is `other`. */
export function principalKind(principal: string): "system" | "administrators" | "other" {
  const name = principal.trim().toLowerCase();
  if (name === "nt authority\\system" || name.replace(/^\*/, "") === SYSTEM_SID.toLowerCase()) {
    return "system";
  }
  if (
    name === "builtin\\administrators" ||
    name.replace(/^\*/, "") === ADMINISTRATORS_SID.toLowerCase()
  ) {
    return "administrators";
  }
  return "other";
}

/**
 * Parses the output of `icacls <path>`: the first line is the path, one space and the first entry;
 * further entries are indented; a blank line ends the list (the localised summary follows).
 * Throws on anything else, so a surprise is a refusal, never a pass.
 */
export function parseIcaclsOutput(output: string, path: string): AclEntry[] {
  const lines = output.replace(/^\uFEFF/, "").split(/\r?\n/);
  const first = lines[0] ?? "";
  if (!first.startsWith(`${path} `)) {
    throw new Error(`icacls output does not start with ${JSON.stringify(path)}`);
  }
  const entries: AclEntry[] = [];
  const texts = [first.slice(path.length + 1)];
  for (const line of lines.slice(1)) {
    if (line.trim() === "") break;
    if (!/^\s/.test(line)) throw new Error(`unexpected icacls line ${JSON.stringify(line)}`);
    texts.push(line);
  }
  for (const raw of texts) {
    const text = raw.trim();
    const match = /^([^:()]+):((?:\([A-Za-z,]+\))+)$/.exec(text);
    if (!match) throw new Error(`unexpected icacls entry ${JSON.stringify(text)}`);
    const flags = [...match[2]!.matchAll(/\(([A-Za-z,]+)\)/g)].map((m) => m[1]!);
    entries.push({
      principal: match[1]!,
      flags,
      inherited: flags.includes("I"),
      deny: flags.includes("DENY"),
    });
  }
  return entries;
}

/** How `icacls /remove` names a principal: unresolved SIDs are printed bare but passed as `*SID`. */
function removeArgument(principal: string): string {
  return /^S-1-[0-9-]+$/.test(principal) ? `*${principal}` : principal;
}

/** Entries granting or denying anyone but SYSTEM and Administrators. */
export function foreignEntries(entries: AclEntry[]): AclEntry[] {
  return entries.filter((e) => principalKind(e.principal) === "other");
}

/**
 * PowerShell that prints `<owner SID>\t<path>` for the path in `ONECONNECT_ACL_PATH` and each
 * existing ancestor. The path travels in the environment, never in the command line.
 */
export const OWNER_SCRIPT = "$p = $env:ONECONNECT_ACL_PATH; while ($p) { " +
  "if (Test-Path -LiteralPath $p) { " +
  "$o = (Get-Acl -LiteralPath $p).GetOwner([System.Security.Principal.SecurityIdentifier]).Value; " +
  'Write-Output "$o`t$p" }; ' +
  "$p = Split-Path -LiteralPath $p -Parent }";

/**
 * PowerShell that prints `<owner SID>\t<path>` for each existing path of `ONECONNECT_ACL_PATHS`
 * (joined by `|`, which no Windows path holds): the files in the state directory.
 */
const FILE_OWNERS_SCRIPT = "foreach ($p in $env:ONECONNECT_ACL_PATHS.Split('|')) { " +
  "if (Test-Path -LiteralPath $p) { " +
  "$o = (Get-Acl -LiteralPath $p).GetOwner([System.Security.Principal.SecurityIdentifier]).Value; " +
  'Write-Output "$o`t$p" } }';

/**
 * The state directory's security descriptor (SDDL): owner Administrators, protected (nothing
 * inherited), full control for SYSTEM and Administrators, inherited by everything created inside.
 */
const STATE_DIR_SDDL = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/**
 * PowerShell (on .NET Framework, as Windows PowerShell 5.1 is) that creates the folder
 * `ONECONNECT_ACL_PATH` (and missing parents) with {@linkcode STATE_DIR_SDDL} in the one
 * CreateDirectory call: it never exists with inherited entries another user could open it by.
 */
const CREATE_RESTRICTED_SCRIPT = "$ErrorActionPreference = 'Stop'; " +
  "$s = New-Object System.Security.AccessControl.DirectorySecurity; " +
  `$s.SetSecurityDescriptorSddlForm('${STATE_DIR_SDDL}'); ` +
  "[void][System.IO.Directory]::CreateDirectory($env:ONECONNECT_ACL_PATH, $s)";

/** Parses {@linkcode OWNER_SCRIPT} output into owner SIDs by path. */
export function parseOwners(output: string): Array<{ sid: string; path: string }> {
  const owners: Array<{ sid: string; path: string }> = [];
  for (const line of output.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    const match = /^(S-1-[0-9-]+)\t(.+)$/.exec(line.trim());
    if (!match) throw new Error(`unexpected owner line ${JSON.stringify(line)}`);
    owners.push({ sid: match[1]!, path: match[2]! });
  }
  return owners;
}

/** icacls arguments making Administrators the owner of `dir`. */
function icaclsOwnerArgs(dir: string): string[] {
  return [dir, "/setowner", `*${ADMINISTRATORS_SID}`];
}

/**
 * icacls arguments that leave `dir` (and everything created in it) to SYSTEM and Administrators:
 * inherited entries removed, their grants replaced. SIDs, so localised names do not matter.
 */
function icaclsRestrictArgs(dir: string): string[] {
  return [
    dir,
    "/inheritance:r",
    "/grant:r",
    `*${SYSTEM_SID}:(OI)(CI)F`,
    `*${ADMINISTRATORS_SID}:(OI)(CI)F`,
  ];
}

function firstLine(text: string): string {
  return text.trim().split(/\r?\n/)[0] ?? "";
}

function asAdmin(program: string, args: string[]): string {
  return `${program} ${args.map((a) => `"${a}"`).join(" ")}`;
}

/** Checks and repairs the ACL of a Windows directory through {@linkcode CommandRunner}. */
export class WindowsAcl {
  readonly #run: CommandRunner;

  constructor(run: CommandRunner) {
    this.#run = run;
  }

  async #exec(program: string, args: string[], env?: Record<string, string>): Promise<string> {
    let result: { success: boolean; stdout?: string; stderr: string };
    try {
      result = await this.#run(program, args, env);
    } catch (e) {
      result = { success: false, stderr: errorMessage(e) };
    }
    if (!result.success) {
      const why = firstLine(result.stderr) || firstLine(result.stdout ?? "") || "failed";
      throw new UsageError(
        `Cannot secure ${JSON.stringify(args[0] ?? "")} (${why}); as an administrator run: ${
          asAdmin(program, args)
        }`,
      );
    }
    return result.stdout ?? "";
  }

  /**
   * Refuses `dir` if it or a directory above it is owned by anyone but SYSTEM or Administrators
   * (TrustedInstaller too above it).
   */
  async requireOwners(dir: string): Promise<void> {
    let owners: Array<{ sid: string; path: string }>;
    const output = await this.#exec(
      POWERSHELL_PATH,
      ["-NoProfile", "-NonInteractive", "-Command", OWNER_SCRIPT],
      { ONECONNECT_ACL_PATH: dir },
    );
    try {
      owners = parseOwners(output);
    } catch (e) {
      throw new UsageError(
        `Cannot read the owner of ${JSON.stringify(dir)}: ${errorMessage(e)}`,
      );
    }
    if (owners.length === 0 || owners[0]!.path !== dir) {
      throw new UsageError(`Cannot read the owner of ${JSON.stringify(dir)}: no answer for it`);
    }
    for (const [i, { sid, path }] of owners.entries()) {
      const trusted = sid === SYSTEM_SID || sid === ADMINISTRATORS_SID ||
        (i > 0 && sid === TRUSTED_INSTALLER_SID);
      if (trusted) continue;
      throw new UsageError(
        `Refusing ${JSON.stringify(dir)}: ${
          i === 0 ? "it" : `the folder ${JSON.stringify(path)} above it`
        } is owned by ${sid}, not SYSTEM or Administrators, so that account controls it; check its contents, then as an administrator run: ${
          asAdmin(ICACLS_PATH, [path, "/setowner", `*${ADMINISTRATORS_SID}`, "/T", "/C"])
        }`,
      );
    }
  }

  /** Reads the ACL of `dir` back. */
  async read(dir: string): Promise<AclEntry[]> {
    const output = await this.#exec(ICACLS_PATH, [dir]);
    try {
      return parseIcaclsOutput(output, dir);
    } catch (e) {
      throw new UsageError(
        `Cannot read the ACL of ${JSON.stringify(dir)}: ${errorMessage(e)}`,
      );
    }
  }

  /** Refuses `dir` unless its owners are ours and its ACL holds only SYSTEM and Administrators. */
  async audit(dir: string): Promise<void> {
    await this.requireOwners(dir);
    refuseForeign(dir, await this.read(dir));
  }

  /**
   * Refuses any of `files` (those that exist) owned by anyone but SYSTEM or Administrators or
   * whose ACL grants anyone else: a file planted, or re-granted by its owner, keeps its own ACL
   * whatever its folder's says. One PowerShell for the owners, one icacls per file.
   */
  async auditFiles(files: string[]): Promise<void> {
    if (files.length === 0) return;
    const output = await this.#exec(
      POWERSHELL_PATH,
      ["-NoProfile", "-NonInteractive", "-Command", FILE_OWNERS_SCRIPT],
      { ONECONNECT_ACL_PATHS: files.join("|") },
    );
    let owners: Array<{ sid: string; path: string }>;
    try {
      owners = parseOwners(output);
    } catch (e) {
      throw new UsageError(
        `Cannot read the owners of ${JSON.stringify(files[0])}: ${errorMessage(e)}`,
      );
    }
    for (const { sid, path } of owners) {
      if (!files.includes(path)) {
        throw new UsageError(`Cannot read the owner of ${JSON.stringify(path)}: not asked for`);
      }
      if (sid !== SYSTEM_SID && sid !== ADMINISTRATORS_SID) {
        throw new UsageError(
          `Refusing ${
            JSON.stringify(path)
          }: it is owned by ${sid}, not SYSTEM or Administrators, so that account controls it; check its contents, then as an administrator run: ${
            asAdmin(ICACLS_PATH, [path, "/setowner", `*${ADMINISTRATORS_SID}`])
          }`,
        );
      }
      refuseForeign(path, await this.read(path));
    }
  }

  /**
   * Creates `dir` restricted from its first moment ({@linkcode CREATE_RESTRICTED_SCRIPT}); then
   * {@linkcode secure} checks and reads it back like any other.
   */
  async createRestricted(dir: string): Promise<void> {
    await this.#exec(
      POWERSHELL_PATH,
      ["-NoProfile", "-NonInteractive", "-Command", CREATE_RESTRICTED_SCRIPT],
      { ONECONNECT_ACL_PATH: dir },
    );
  }

  /**
   * Makes `dir` ours: refuses one owned by someone else (a folder someone created first, or
   * planted between our creating it and now), sets the owner to Administrators, removes
   * inheritance and every other entry, then audits.
   */
  async secure(dir: string): Promise<void> {
    await this.requireOwners(dir);
    await this.#exec(ICACLS_PATH, icaclsOwnerArgs(dir));
    await this.#exec(ICACLS_PATH, icaclsRestrictArgs(dir));
    for (const entry of foreignEntries(await this.read(dir))) {
      await this.#exec(ICACLS_PATH, [dir, "/remove", removeArgument(entry.principal)]);
    }
    await this.audit(dir);
  }
}

/** Refuses `path` when its ACL `entries` grant or deny anyone but SYSTEM and Administrators. */
function refuseForeign(path: string, entries: AclEntry[]): void {
  const foreign = foreignEntries(entries);
  if (foreign.length === 0) return;
  const who = foreign[0]!.principal;
  throw new UsageError(
    `Refusing ${JSON.stringify(path)}: its ACL grants ${
      JSON.stringify(who)
    }, not only SYSTEM and Administrators; as an administrator run: ${
      asAdmin(ICACLS_PATH, [path, "/remove", removeArgument(who)])
    }`,
  );
}
