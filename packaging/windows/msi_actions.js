// Deferred custom actions of the OneConnect agent MSI: JScript run by msiexec as LocalSystem.
// Each receives its CustomActionData as fields separated by NUL characters (set by the MSI's
// Set* actions). The token reaches `oneconnect-agent provision` through this process's
// environment, never a command line; the action is hidden from the MSI log (MsiHiddenProperties
// and the HideTarget bit).

var PROVISION_VARIABLES = [
  "ONECONNECT_PLATFORM_URL",
  "ONECONNECT_CA_FILE",
  "ONECONNECT_CA_PIN",
  "ONECONNECT_ENROLLMENT_TOKEN",
];

function fields() {
  return String(Session.Property("CustomActionData")).split("\u0000");
}

function log(text) {
  var record = Session.Installer.CreateRecord(0);
  record.StringData(0) = "oneconnect-agent: " + text;
  Session.Message(0x04000000, record); // INSTALLMESSAGE_INFO
}

// Install, upgrade, repair: store the properties for the service. Exit 2 (a bad value) fails
// the installation, which rolls back to the previous version, if any.
function provision() {
  var data = fields();
  var shell = new ActiveXObject("WScript.Shell");
  var env = shell.Environment("PROCESS");
  for (var i = 0; i < PROVISION_VARIABLES.length; i++) {
    env.Item(PROVISION_VARIABLES[i]) = data[i + 1] || "";
  }
  var code;
  try {
    code = shell.Run('"' + data[0] + 'oneconnect-agent.exe" provision', 0, true);
  } finally {
    for (var j = 0; j < PROVISION_VARIABLES.length; j++) env.Remove(PROVISION_VARIABLES[j]);
  }
  if (code !== 0) {
    log("provision failed with exit code " + code + " (2: an invalid PLATFORM_URL, CA_FILE or CA_PIN)");
    return 3; // ERROR_INSTALL_FAILURE
  }
  return 1; // ERROR_SUCCESS
}

// Uninstall with PURGE=1: unenroll (the agent gives the platform at most 10 s), then delete the
// state directory. Never fails the uninstall.
function purge() {
  var data = fields();
  var shell = new ActiveXObject("WScript.Shell");
  try {
    shell.Run('"' + data[0] + 'oneconnect-agent.exe" unenroll --yes', 0, true);
  } catch (e) {
    log("unenroll could not run: " + e.message);
  }
  var state = data[1] + "OneConnect\\Agent";
  var fso = new ActiveXObject("Scripting.FileSystemObject");
  try {
    if (fso.FolderExists(state)) fso.DeleteFolder(state, true);
  } catch (e) {
    log("could not delete " + state + ": " + e.message);
  }
  return 1;
}
