import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ACTION_TYPES,
  buildMsi,
  MSI_PROPERTIES,
  msiVersion,
  SEQUENCE,
} from "../tasks/package/msi.ts";
import { VERSION } from "../src/version.ts";
import { findTool, skipWithout, tempDir } from "./_support/helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const WIXL = findTool("wixl");
const MSIINFO = findTool("msiinfo");
const MSIEXTRACT = findTool("msiextract");
const tools = WIXL !== null && MSIINFO !== null && MSIEXTRACT !== null &&
  findTool("msibuild") !== null;
if (!tools) {
  console.warn(
    "SKIPPING the MSI tests: wixl/msitools not found (apt-get install -y wixl msitools)",
  );
}

/** A table exported by msiinfo: rows as column -> value (the 3 header lines skipped). */
async function table(msi: string, name: string): Promise<Record<string, string>[]> {
  const out = await new Deno.Command(MSIINFO!, { args: ["export", msi, name] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).split(/\r?\n/).filter((l) => l !== "");
  const columns = lines[0]!.split("\t");
  return lines.slice(3).map((line) => {
    const cells = line.split("\t");
    return Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? ""]));
  });
}

function row(rows: Record<string, string>[], key: string, value: string): Record<string, string> {
  const found = rows.find((r) => r[key] === value);
  assert.ok(found, `no row with ${key}=${value} in ${JSON.stringify(rows)}`);
  return found;
}

/**
 * One MSI for all the tests below. The WinSW host is a stand-in file here (no network to fetch
 * WinSW): the tables, not the host, are what is checked.
 */
async function built(dir: string) {
  const binary = join(dir, "oneconnect-agent-windows-amd64.exe");
  const winsw = join(dir, "WinSW-x64.exe");
  await Deno.writeTextFile(binary, `MZ agent ${VERSION} ${crypto.randomUUID()}`);
  await Deno.writeTextFile(winsw, `MZ winsw stand-in ${crypto.randomUUID()}`);
  const msi = await buildMsi({ version: VERSION, binary, outDir: join(dir, "out"), winsw });
  return { msi, binary, winsw };
}

Deno.test({
  name: "MSI: the service is registered, started on install, stopped on both, removed on uninstall",
  ignore: skipWithout(tools),
}, async () => {
  await using dir = await tempDir();
  const { msi } = await built(dir.path);
  assert.equal(msi, join(dir.path, "out", `oneconnect-agent_${VERSION}_x64.msi`));
  const service = row(await table(msi, "ServiceInstall"), "Name", "oneconnect-agent");
  assert.equal(service.ServiceType, "16"); // SERVICE_WIN32_OWN_PROCESS
  assert.equal(service.StartType, "2"); // SERVICE_AUTO_START
  assert.equal(service.StartName, ""); // LocalSystem
  assert.equal(service.Component_, "Service");
  const control = row(await table(msi, "ServiceControl"), "Name", "oneconnect-agent");
  // msidbServiceControlEvent: start on install 0x1, stop on install 0x2 and uninstall 0x20,
  // delete on uninstall 0x80.
  assert.equal(Number(control.Event), 0x1 | 0x2 | 0x20 | 0x80);
  assert.equal(control.Wait, "1");
  const files = await table(msi, "File");
  assert.equal(row(files, "FileName", "oneconnect-agent-service.exe").Component_, "Service");
  const sequence = await table(msi, "InstallExecuteSequence");
  for (const action of ["StopServices", "DeleteServices", "InstallServices", "StartServices"]) {
    row(sequence, "Action", action);
  }
});

Deno.test({
  name: "MSI: a major upgrade removes the old version inside the transaction and keeps ProgramData",
  ignore: skipWithout(tools),
}, async () => {
  await using dir = await tempDir();
  const { msi } = await built(dir.path);
  const upgrade = await table(msi, "Upgrade");
  const code = row(await table(msi, "Property"), "Property", "UpgradeCode").Value;
  assert.match(code!, /^\{[0-9A-F-]{36}\}$/);
  const older = row(upgrade, "ActionProperty", "WIX_UPGRADE_DETECTED");
  assert.equal(older.UpgradeCode, code);
  assert.equal(older.VersionMax, msiVersion(VERSION));
  assert.equal(
    row(upgrade, "ActionProperty", "WIX_DOWNGRADE_DETECTED").VersionMin,
    msiVersion(VERSION),
  );
  // A downgrade is refused before anything changes.
  row(await table(msi, "LaunchCondition"), "Condition", "NOT WIX_DOWNGRADE_DETECTED");
  const sequence = await table(msi, "InstallExecuteSequence");
  const at = (action: string) => Number(row(sequence, "Action", action).Sequence);
  assert.ok(at("InstallValidate") < at("RemoveExistingProducts"));
  assert.ok(at("RemoveExistingProducts") < at("InstallInitialize"));
  // Nothing of the package lives in ProgramData: no directory, file or removal there.
  const directories = await table(msi, "Directory");
  assert.ok(
    !directories.some((d) => /CommonAppData|ProgramData/i.test(d.Directory! + d.DefaultDir)),
  );
  assert.deepEqual(await table(msi, "RemoveFile"), []);
  const purge = row(sequence, "Action", "PurgeAgent");
  assert.equal(purge.Condition, 'REMOVE~="ALL" AND PURGE="1" AND NOT UPGRADINGPRODUCTCODE');
  assert.equal(row(await table(msi, "Property"), "Property", "PURGE").Value, "0");
  assert.ok(at("StopServices") < at("PurgeAgent") && at("PurgeAgent") < at("RemoveFiles"));
  assert.ok(at("SetPurgeAgent") < at("PurgeAgent"));
});

Deno.test({
  name: "MSI: the provisioning properties reach 'provision' through a hidden deferred action",
  ignore: skipWithout(tools),
}, async () => {
  await using dir = await tempDir();
  const { msi } = await built(dir.path);
  const properties = await table(msi, "Property");
  const hidden = row(properties, "Property", "MsiHiddenProperties").Value!.split(";");
  assert.ok(hidden.includes("ENROLLMENT_TOKEN") && hidden.includes("ProvisionAgent"));
  const secure = row(properties, "Property", "SecureCustomProperties").Value!.split(";");
  for (const p of MSI_PROPERTIES) assert.ok(secure.includes(p), p);
  const actions = await table(msi, "CustomAction");
  const provision = row(actions, "Action", "ProvisionAgent");
  assert.equal(Number(provision.Type), ACTION_TYPES.ProvisionAgent);
  assert.ok(Number(provision.Type) & 0x2000, "HideTarget");
  assert.equal(Number(provision.Type) & 0x7, 5, "JScript from the Binary table");
  assert.equal(provision.Source, "AgentActions");
  assert.equal(provision.Target, "provision");
  const data = row(actions, "Action", "SetProvisionAgent");
  assert.equal(data.Source, "ProvisionAgent");
  assert.equal(
    data.Target,
    "[INSTALLFOLDER][~][PLATFORM_URL][~][CA_FILE][~][CA_PIN][~][ENROLLMENT_TOKEN]",
  );
  const sequence = await table(msi, "InstallExecuteSequence");
  const at = (action: string) => Number(row(sequence, "Action", action).Sequence);
  assert.deepEqual(
    Object.keys(SEQUENCE).map((a) => at(a)),
    Object.values(SEQUENCE),
  );
  assert.ok(at("InstallFiles") < at("SetProvisionAgent"));
  assert.ok(at("SetProvisionAgent") < at("ProvisionAgent"));
  assert.ok(at("ProvisionAgent") < at("StartServices"));
  assert.equal(row(sequence, "Action", "ProvisionAgent").Condition, 'NOT REMOVE~="ALL"');

  // The script in the Binary table is packaging/windows/msi_actions.js; its variables follow
  // the order of the action data, and it passes them by environment, never by command line.
  const out = await new Deno.Command(MSIINFO!, {
    args: ["extract", msi, "Binary.AgentActions"],
  }).output();
  const script = await Deno.readTextFile(join(ROOT, "packaging/windows/msi_actions.js"));
  assert.equal(new TextDecoder().decode(out.stdout), script);
  new Function(script); // parses (JScript is ES3 plus COM property assignment)
  const vars = [...script.matchAll(/"(ONECONNECT_[A-Z_]+)"/g)].map((m) => m[1]);
  assert.deepEqual(vars, [
    "ONECONNECT_PLATFORM_URL",
    "ONECONNECT_CA_FILE",
    "ONECONNECT_CA_PIN",
    "ONECONNECT_ENROLLMENT_TOKEN",
  ]);
  assert.match(script, /oneconnect-agent\.exe" provision', 0, true\)/);
});

Deno.test({
  name: "MSI: msiextract yields the agent, WinSW and its XML under Program Files",
  ignore: skipWithout(tools),
}, async () => {
  await using dir = await tempDir();
  const { msi, binary, winsw } = await built(dir.path);
  const out = join(dir.path, "extracted");
  const result = await new Deno.Command(MSIEXTRACT!, { args: ["-C", out, msi] }).output();
  assert.ok(result.success, new TextDecoder().decode(result.stderr));
  // msiextract writes system folders (ProgramFiles64Folder) as the root: the Directory table
  // says where INSTALLFOLDER lives.
  const folder = join(out, "OneConnect Agent");
  const directories = await table(msi, "Directory");
  const install = row(directories, "Directory", "INSTALLFOLDER");
  assert.equal(install.Directory_Parent, "ProgramFiles64Folder");
  assert.equal(install.DefaultDir, "OneConnect Agent");
  const names: string[] = [];
  for await (const e of Deno.readDir(folder)) names.push(e.name);
  assert.deepEqual(names.sort(), [
    "oneconnect-agent-service.exe",
    "oneconnect-agent-service.xml",
    "oneconnect-agent.exe",
  ]);
  const same = async (a: string, b: string) =>
    assert.deepEqual(await Deno.readFile(a), await Deno.readFile(b), `${a} != ${b}`);
  await same(join(folder, "oneconnect-agent.exe"), binary);
  await same(join(folder, "oneconnect-agent-service.exe"), winsw);
  await same(
    join(folder, "oneconnect-agent-service.xml"),
    join(ROOT, "packaging/windows/oneconnect-agent.xml"),
  );
});

Deno.test("MSI version: numbers only, pre-release suffix dropped, out of range refused", () => {
  assert.equal(msiVersion("1.2.3"), "1.2.3");
  assert.equal(msiVersion("1.2.3-rc.1"), "1.2.3");
  assert.throws(() => msiVersion("1.2"), /expected a\.b\.c/);
  assert.throws(() => msiVersion("256.0.0"), /expected a\.b\.c/);
});

Deno.test("MSI build says what is missing when there is no WinSW host", async () => {
  await using dir = await tempDir();
  await assert.rejects(
    buildMsi({
      version: "1.0.0",
      binary: "/bin/true",
      outDir: dir.path,
      winsw: join(dir.path, "none.exe"),
    }),
    /no WinSW service host at .*none\.exe/,
  );
});
