import assert from "node:assert/strict";
import { UsageError } from "../src/errors.ts";
import {
  type AclEntry,
  type CommandRunner,
  foreignEntries,
  ICACLS_PATH,
  OWNER_SCRIPT,
  parseIcaclsOutput,
  parseOwners,
  POWERSHELL_PATH,
  principalKind,
  WindowsAcl,
} from "../src/state/windows_acl.ts";
import { rejectsWith } from "./_support/helpers.ts";
import { denoFileSystem } from "../src/file_system.ts";
import { IdentityStore } from "../src/state/identity_store.ts";

const DIR = "C:\\ProgramData\\OneConnect\\Agent";

/** icacls output as Windows prints it: path, one space, entries aligned under the first one. */
function icaclsOutput(path: string, entries: string[]): string {
  const pad = " ".repeat(path.length + 1);
  return `${path} ${entries[0]}\r\n${entries.slice(1).map((e) => `${pad}${e}\r\n`).join("")}` +
    "\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n";
}

// Recorded shapes of real icacls output (English Windows 10/11 and Server 2022).
const SECURED = icaclsOutput(DIR, [
  "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)",
  "BUILTIN\\Administrators:(OI)(CI)(F)",
]);
const PROGRAMDATA_DEFAULT = icaclsOutput(DIR, [
  "NT AUTHORITY\\SYSTEM:(I)(OI)(CI)(F)",
  "BUILTIN\\Administrators:(I)(OI)(CI)(F)",
  "CREATOR OWNER:(I)(OI)(CI)(IO)(F)",
  "BUILTIN\\Users:(I)(OI)(CI)(RX)",
  "BUILTIN\\Users:(I)(CI)(WD,AD,WEA,WA)",
]);
const PRECREATED_BY_MALLORY = icaclsOutput(DIR, [
  "DESKTOP-7Q2K9LM\\mallory:(OI)(CI)(F)",
  "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)",
  "BUILTIN\\Administrators:(OI)(CI)(F)",
]);
const SIDS = icaclsOutput(DIR, [
  "*S-1-5-18:(OI)(CI)(F)",
  "*S-1-5-32-544:(OI)(CI)(F)",
  "S-1-5-21-3623811015-3361044348-30300820-1013:(OI)(CI)(RX)",
]);
const DENY_EVERYONE = icaclsOutput(DIR, [
  "Everyone:(OI)(CI)(DENY)(W,D)",
  "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)",
]);
const GERMAN = icaclsOutput(DIR, [
  "NT-AUTORITÄT\\SYSTEM:(OI)(CI)(F)",
  "VORDEFINIERT\\Administratoren:(OI)(CI)(F)",
]).replace(
  "Successfully processed 1 files; Failed processing 0 files",
  "1 Dateien erfolgreich verarbeitet, bei 0 Dateien ist ein Verarbeitungsfehler aufgetreten.",
);
const SPACED = "C:\\Program Files\\OneConnect Agent\\state";

Deno.test("icacls parser reads real outputs: secured, inherited defaults, SIDs, deny", () => {
  const secured = parseIcaclsOutput(SECURED, DIR);
  assert.deepEqual(secured, [
    { principal: "NT AUTHORITY\\SYSTEM", flags: ["OI", "CI", "F"], inherited: false, deny: false },
    {
      principal: "BUILTIN\\Administrators",
      flags: ["OI", "CI", "F"],
      inherited: false,
      deny: false,
    },
  ]);
  assert.deepEqual(foreignEntries(secured), []);

  const inherited = parseIcaclsOutput(PROGRAMDATA_DEFAULT, DIR);
  assert.equal(inherited.length, 5);
  assert.ok(inherited.every((e) => e.inherited));
  assert.deepEqual(foreignEntries(inherited).map((e) => e.principal), [
    "CREATOR OWNER",
    "BUILTIN\\Users",
    "BUILTIN\\Users",
  ]);
  assert.deepEqual(inherited[4]!.flags, ["I", "CI", "WD,AD,WEA,WA"]);

  assert.deepEqual(
    foreignEntries(parseIcaclsOutput(PRECREATED_BY_MALLORY, DIR)).map((e) => e.principal),
    ["DESKTOP-7Q2K9LM\\mallory"],
  );
  const sids = parseIcaclsOutput(SIDS, DIR);
  assert.deepEqual(sids.map((e) => principalKind(e.principal)), [
    "system",
    "administrators",
    "other",
  ]);
  const deny = parseIcaclsOutput(DENY_EVERYONE, DIR);
  assert.equal(deny[0]!.deny, true);
  assert.deepEqual(foreignEntries(deny).map((e) => e.principal), ["Everyone"]);

  const spaced = parseIcaclsOutput(
    icaclsOutput(SPACED, ["NT AUTHORITY\\SYSTEM:(OI)(CI)(F)", "BUILTIN\\Users:(RX)"]),
    SPACED,
  );
  assert.deepEqual(spaced.map((e) => e.principal), ["NT AUTHORITY\\SYSTEM", "BUILTIN\\Users"]);
});

Deno.test("icacls parser: localised and look-alike names are foreign, never trusted", () => {
  // Localised names are not recognised (fail closed): only the English names and SIDs are.
  assert.equal(foreignEntries(parseIcaclsOutput(GERMAN, DIR)).length, 2);
  for (
    const name of [
      "EVIL\\SYSTEM",
      "SYSTEM",
      "NT AUTHORITY\\SYSTEM2",
      "BUILTIN\\Administrators2",
      "CONTOSO\\Administrators",
      "Administrators",
      "*S-1-5-32-5440",
      "*S-1-5-18-1",
      "S-1-5-21-1-2-3-500",
    ]
  ) {
    assert.equal(principalKind(name), "other", name);
  }
  for (const name of ["nt authority\\system", "*S-1-5-18", "S-1-5-18"]) {
    assert.equal(principalKind(name), "system", name);
  }
});

Deno.test("icacls parser refuses hostile or unexpected output instead of passing it", () => {
  const hostile: Array<[string, string]> = [
    // An entry smuggled as an unindented line.
    [`${SECURED.split("\r\n\r\n")[0]}\r\nEVIL\\x:(F)\r\n`, "unexpected icacls line"],
    // Output for another path.
    [icaclsOutput("C:\\ProgramData\\Other", ["NT AUTHORITY\\SYSTEM:(F)"]), "does not start with"],
    // An error instead of an ACL.
    ["C:\\ProgramData\\OneConnect\\Agent: Access is denied.\r\n", "does not start with"],
    // Garbage in an entry.
    [icaclsOutput(DIR, ["NT AUTHORITY\\SYSTEM:(F) trailing"]), "unexpected icacls entry"],
    [icaclsOutput(DIR, ["NT AUTHORITY\\SYSTEM:F"]), "unexpected icacls entry"],
    [icaclsOutput(DIR, ["BUILTIN\\Administrators:(OI)(CI)(F)", "   :(F)"]), "unexpected"],
  ];
  for (const [output, why] of hostile) {
    assert.throws(() => parseIcaclsOutput(output, DIR), new RegExp(why.replace(/[\\()]/g, "\\$&")));
  }
});

Deno.test("owner output parser reads SIDs per path and refuses anything else", () => {
  assert.deepEqual(
    parseOwners(`S-1-5-32-544\t${DIR}\r\nS-1-5-18\tC:\\ProgramData\\OneConnect\r\n`),
    [
      { sid: "S-1-5-32-544", path: DIR },
      { sid: "S-1-5-18", path: "C:\\ProgramData\\OneConnect" },
    ],
  );
  assert.throws(() => parseOwners("BUILTIN\\Administrators\tC:\\x\r\n"), /unexpected owner line/);
  assert.ok(OWNER_SCRIPT.includes("$env:ONECONNECT_ACL_PATH"), "the path is never in argv");
});

/** A tiny model of one Windows folder tree that answers icacls and the owner script. */
class FakeWindows {
  readonly calls: string[] = [];
  /** Folders made by the create script, with the descriptor they were made with. */
  readonly created: Array<{ path: string; sddl: string }> = [];
  owners = new Map<string, string>([
    ["C:\\ProgramData", "S-1-5-18"],
    ["C:\\", "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"],
  ]);
  acl = new Map<string, string[]>();

  run: CommandRunner = (command, args, env) => {
    this.calls.push(
      `${command === ICACLS_PATH ? "icacls" : "powershell"} ${args.slice(1).join(" ")}`,
    );
    if (command === POWERSHELL_PATH && args.join(" ").includes("CreateDirectory")) {
      // As the .NET call: the folder exists from the start with the descriptor it was given.
      const sddl = /'(O:[^']*)'/.exec(args.join(" "))?.[1] ?? "";
      this.created.push({ path: env!.ONECONNECT_ACL_PATH!, sddl });
      this.owners.set(env!.ONECONNECT_ACL_PATH!, sddl.startsWith("O:BA") ? "S-1-5-32-544" : "?");
      this.acl.set(env!.ONECONNECT_ACL_PATH!, sddlEntries(sddl));
      return Promise.resolve({ success: true, stdout: "", stderr: "" });
    }
    if (command === POWERSHELL_PATH && env?.ONECONNECT_ACL_PATHS !== undefined) {
      const lines = env.ONECONNECT_ACL_PATHS.split("|").filter((p) => this.owners.has(p))
        .map((p) => `${this.owners.get(p)}\t${p}`);
      return Promise.resolve({ success: true, stdout: lines.join("\r\n"), stderr: "" });
    }
    if (command === POWERSHELL_PATH) {
      let path: string | undefined = env?.ONECONNECT_ACL_PATH;
      const lines: string[] = [];
      while (path) {
        const owner = this.owners.get(path);
        if (owner) lines.push(`${owner}\t${path}`);
        const i = path.lastIndexOf("\\");
        path = i > 2 ? path.slice(0, i) : path.length > 3 ? path.slice(0, 3) : undefined;
      }
      return Promise.resolve({ success: true, stdout: lines.join("\r\n"), stderr: "" });
    }
    const [dir, ...rest] = args;
    const entries = this.acl.get(dir!) ?? [];
    if (rest.length === 0) {
      return Promise.resolve({ success: true, stdout: icaclsOutput(dir!, entries), stderr: "" });
    }
    if (rest[0] === "/setowner") this.owners.set(dir!, rest[1]!.slice(1));
    if (rest[0] === "/inheritance:r") {
      // As real icacls: inherited entries go, explicit ones of others stay, grants replace.
      const kept = entries.filter((e) =>
        !e.includes("(I)") && principalKind(e.split(":")[0]!) === "other"
      );
      this.acl.set(dir!, [
        ...kept,
        "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)",
        "BUILTIN\\Administrators:(OI)(CI)(F)",
      ]);
    }
    if (rest[0] === "/remove") {
      const who = rest[1]!.replace(/^\*/, "");
      this.acl.set(dir!, entries.filter((e) => e.split(":")[0]!.replace(/^\*/, "") !== who));
    }
    return Promise.resolve({ success: true, stdout: "processed file: x", stderr: "" });
  };
}

Deno.test("secure sets the owner, strips inheritance and every other entry, then reads back", async () => {
  const win = new FakeWindows();
  win.owners.set("C:\\ProgramData\\OneConnect", "S-1-5-32-544");
  win.owners.set(DIR, "S-1-5-32-544");
  win.acl.set(DIR, [
    "S-1-5-21-1-2-3-1013:(OI)(CI)(M)",
    ...parseIcaclsOutput(PROGRAMDATA_DEFAULT, DIR).map(render),
  ]);
  await new WindowsAcl(win.run).secure(DIR);
  assert.deepEqual(win.calls, [
    "powershell -NonInteractive -Command " + OWNER_SCRIPT,
    "icacls /setowner *S-1-5-32-544",
    "icacls /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F",
    "icacls ",
    "icacls /remove *S-1-5-21-1-2-3-1013",
    "powershell -NonInteractive -Command " + OWNER_SCRIPT,
    "icacls ",
  ]);
  assert.deepEqual(win.acl.get(DIR), [
    "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)",
    "BUILTIN\\Administrators:(OI)(CI)(F)",
  ]);
});

/** The entries icacls shows for a protected SDDL DACL of allow-full ACEs (`SY`, `BA` only). */
function sddlEntries(sddl: string): string[] {
  const dacl = /D:P((?:\([^)]*\))+)/.exec(sddl);
  if (!dacl) return ["CREATOR OWNER:(I)(OI)(CI)(IO)(F)", "BUILTIN\\Users:(I)(OI)(CI)(RX)"];
  return [...dacl[1]!.matchAll(/\(A;OICI;FA;;;(SY|BA)\)/g)].map((m) =>
    m[1] === "SY" ? "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)" : "BUILTIN\\Administrators:(OI)(CI)(F)"
  );
}

function render(e: AclEntry): string {
  return `${e.principal}:${e.flags.map((f) => `(${f})`).join("")}`;
}

Deno.test("secure refuses a folder someone else created first, changing nothing", async () => {
  const win = new FakeWindows();
  win.owners.set("C:\\ProgramData\\OneConnect", "S-1-5-32-544");
  win.owners.set(DIR, "S-1-5-21-3623811015-3361044348-30300820-1013");
  win.acl.set(DIR, parseIcaclsOutput(PRECREATED_BY_MALLORY, DIR).map(render));
  const error = await rejectsWith(new WindowsAcl(win.run).secure(DIR), UsageError);
  assert.equal(
    error.message,
    `Refusing "C:\\\\ProgramData\\\\OneConnect\\\\Agent": it is owned by S-1-5-21-3623811015-3361044348-30300820-1013, not SYSTEM or Administrators, so that account controls it; check its contents, then as an administrator run: ${ICACLS_PATH} "${DIR}" "/setowner" "*S-1-5-32-544" "/T" "/C"`,
  );
  assert.equal(win.calls.length, 1, "only the owner was read");

  // The same for a parent folder planted by a user, even when the agent made the folder itself.
  const planted = new FakeWindows();
  planted.owners.set("C:\\ProgramData\\OneConnect", "S-1-5-21-1-2-3-1013");
  planted.owners.set(DIR, "S-1-5-32-544");
  const parent = await rejectsWith(new WindowsAcl(planted.run).secure(DIR), Error);
  assert.match(
    parent.message,
    /the folder "C:\\\\ProgramData\\\\OneConnect" above it is owned by S-1-5-21-1-2-3-1013/,
  );
});

Deno.test("audit refuses an ACL that grants anyone else, with the exact icacls fix", async () => {
  const win = new FakeWindows();
  win.owners.set("C:\\ProgramData\\OneConnect", "S-1-5-32-544");
  win.owners.set(DIR, "S-1-5-32-544");
  win.acl.set(DIR, parseIcaclsOutput(PRECREATED_BY_MALLORY, DIR).map(render));
  const error = await rejectsWith(new WindowsAcl(win.run).audit(DIR), UsageError);
  assert.ok(
    error.message.endsWith(`run: ${ICACLS_PATH} "${DIR}" "/remove" "DESKTOP-7Q2K9LM\\mallory"`),
    error.message,
  );
  win.acl.set(DIR, parseIcaclsOutput(SECURED, DIR).map(render));
  await new WindowsAcl(win.run).audit(DIR);
  win.acl.set(DIR, parseIcaclsOutput(GERMAN, DIR).map(render));
  await assert.rejects(() => new WindowsAcl(win.run).audit(DIR), /NT-AUTORITÄT\\\\SYSTEM/);
});

Deno.test("a failing icacls names the command to run as an administrator", async () => {
  const run: CommandRunner = (command) =>
    Promise.resolve(
      command === POWERSHELL_PATH
        ? { success: true, stdout: `S-1-5-32-544\t${DIR}`, stderr: "" }
        : { success: false, stdout: "", stderr: `${DIR}: Access is denied.\r\n` },
    );
  const error = await rejectsWith(new WindowsAcl(run).secure(DIR), UsageError);
  assert.match(error.message, /\(C:\\ProgramData\\OneConnect\\Agent: Access is denied\.\)/);
  assert.ok(error.message.endsWith(`run: ${ICACLS_PATH} "${DIR}" "/setowner" "*S-1-5-32-544"`));
});

/** A FileSystem over the fake tree: `DIR` and the files listed exist once created; mkdir is logged. */
function fakeFs(win: FakeWindows, files: string[] = []) {
  const mkdirs: string[] = [];
  const info = (isDirectory: boolean) =>
    ({
      isFile: !isDirectory,
      isDirectory,
      isSymlink: false,
      mode: null,
    }) as unknown as Deno.FileInfo;
  const fs = {
    ...denoFileSystem,
    mkdir: (path: string) => {
      mkdirs.push(path);
      // As Deno.mkdir on Windows: the folder inherits ProgramData's entries.
      win.owners.set(path, "S-1-5-32-544");
      win.acl.set(path, parseIcaclsOutput(PROGRAMDATA_DEFAULT, DIR).map(render));
      return Promise.resolve();
    },
    lstat: (path: string) => {
      if (path === DIR && win.acl.has(DIR)) return Promise.resolve(info(true));
      if (files.includes(path)) return Promise.resolve(info(false));
      return Promise.reject(new Deno.errors.NotFound(path));
    },
  };
  return { fs, mkdirs };
}

Deno.test("the Windows state folder is created restricted in one call, never inherit-then-restrict", async () => {
  // Fails on 32b58ff: it made the folder with Deno.mkdir (inheriting ProgramData's entries, which
  // let Users open it) and restricted it with icacls afterwards.
  const win = new FakeWindows();
  win.owners.set("C:\\ProgramData\\OneConnect", "S-1-5-32-544");
  const { fs, mkdirs } = fakeFs(win);
  await new IdentityStore(DIR, { os: "windows", runCommand: win.run, fs }).ensureStateDir();
  assert.deepEqual(mkdirs, [], "no folder is made with inherited entries");
  assert.equal(win.created.length, 1);
  assert.equal(win.created[0]!.path, DIR);
  // Owner Administrators, protected (nothing inherited), SYSTEM and Administrators only.
  assert.equal(win.created[0]!.sddl, "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)");
  assert.ok(win.calls[0]!.includes("CreateDirectory"), "created before anything else runs");
  assert.ok(!win.calls[0]!.includes(DIR), "the path travels in the environment, not argv");
  assert.deepEqual(win.acl.get(DIR), [
    "NT AUTHORITY\\SYSTEM:(OI)(CI)(F)",
    "BUILTIN\\Administrators:(OI)(CI)(F)",
  ]);
});

Deno.test("the Windows audit reads each state file's owner and ACL, not only the folder's", async () => {
  // Fails on 32b58ff: only the folder's ACL was read; a file granting another account passed.
  // Joined as the store joins them (a backslash on Windows, a slash where this test runs).
  const identity = new IdentityStore(DIR).secretFilePath("identity.json");
  const status = new IdentityStore(DIR).secretFilePath("status.json");
  const secured = () => {
    const win = new FakeWindows();
    win.owners.set("C:\\ProgramData\\OneConnect", "S-1-5-32-544");
    win.owners.set(DIR, "S-1-5-32-544");
    win.acl.set(DIR, parseIcaclsOutput(SECURED, DIR).map(render));
    for (const file of [identity, status]) {
      win.owners.set(file, "S-1-5-18");
      win.acl.set(file, ["NT AUTHORITY\\SYSTEM:(I)(F)", "BUILTIN\\Administrators:(I)(F)"]);
    }
    const store = new IdentityStore(DIR, {
      os: "windows",
      runCommand: win.run,
      fs: fakeFs(win, [identity, status]).fs,
    });
    return { win, store };
  };
  const ok = secured();
  assert.deepEqual(await ok.store.auditPermissions(), []);
  assert.ok(ok.win.calls.some((c) => c === "icacls "), "file ACLs were read");

  const granted = secured();
  granted.win.acl.set(status, [
    "NT AUTHORITY\\SYSTEM:(I)(F)",
    "BUILTIN\\Administrators:(I)(F)",
    "DESKTOP-7Q2K9LM\\mallory:(R)",
  ]);
  const error = await rejectsWith(granted.store.auditPermissions(), UsageError);
  assert.equal(
    error.message,
    `Refusing ${
      JSON.stringify(status)
    }: its ACL grants "DESKTOP-7Q2K9LM\\\\mallory", not only SYSTEM and Administrators; as an administrator run: ${ICACLS_PATH} "${status}" "/remove" "DESKTOP-7Q2K9LM\\mallory"`,
  );

  const owned = secured();
  owned.win.owners.set(identity, "S-1-5-21-1-2-3-1013");
  assert.match(
    (await rejectsWith(owned.store.auditPermissions(), UsageError)).message,
    /^Refusing ".*identity\.json": it is owned by S-1-5-21-1-2-3-1013, not SYSTEM or Administrators/,
  );
});
