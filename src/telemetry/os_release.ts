/** Operating system identity: os-release, sw_vers, machine ids and time zone sources and parsers. */
import { regQueryValue } from "./reg_query.ts";
/** macOS version tool; like every helper here it runs once per process and is in `--allow-run`. */
export const SW_VERS = "/usr/bin/sw_vers";
/** macOS registry explorer, for IOPlatformUUID. */
export const IOREG = "/usr/sbin/ioreg";
/** Windows registry tool, for MachineGuid. */
export const REG_EXE = "C:\\Windows\\System32\\reg.exe";

/** Linux os-release files, in the order os-release(5) says to try them. */
export const OS_RELEASE_FILES = ["/etc/os-release", "/usr/lib/os-release"] as const;
/** Linux machine-id files: systemd's, then the D-Bus copy older or minimal systems keep. */
export const MACHINE_ID_FILES = ["/etc/machine-id", "/var/lib/dbus/machine-id"] as const;

/** The system time zone link (Linux, macOS) and Debian's plain-text copy of its name. */
export const LOCALTIME = "/etc/localtime";
/** Debian's time zone file. */
export const DEBIAN_TIMEZONE = "/etc/timezone";
/** Windows registry key naming the time zone. */
export const TIME_ZONE_KEY = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation";

/** The IANA zone name in an /etc/localtime link target (`../usr/share/zoneinfo/Europe/Berlin`). */
export function zoneFromLocaltimeLink(target: string): string | null {
  const m = /zoneinfo\/(?:posix\/|right\/)?([A-Za-z0-9_+-]+(?:\/[A-Za-z0-9_+-]+)*)$/.exec(target);
  return m ? m[1]! : null;
}

/** TimeZoneKeyName from `reg query ...\TimeZoneInformation /v TimeZoneKeyName`. */
export function parseRegTimeZone(text: string): string | null {
  return regQueryValue(text, "TimeZoneKeyName");
}

/** Parses os-release(5) text: KEY=VALUE lines, values optionally quoted with shell escapes. */
export function parseOsRelease(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!.trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1).replace(/\\(["\\`$])/g, "$1");
    } else if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) {
      value = value.slice(1, -1);
    }
    fields.set(m[1]!, value);
  }
  return fields;
}

/** Parses `sw_vers` output (`ProductName:\tmacOS` lines) into name and version. */
export function parseSwVers(text: string): { name: string | null; version: string | null } {
  const get = (key: string) => {
    // `.` stops at the line end: an empty value must not take the next line (\s would cross it).
    const value = new RegExp(`^${key}:(.*)$`, "m").exec(text)?.[1]?.trim();
    return value ? value : null;
  };
  return { name: get("ProductName"), version: get("ProductVersion") };
}

const UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";

/** Extracts IOPlatformUUID from `ioreg -rd1 -c IOPlatformExpertDevice` output. */
export function parseIoregPlatformUuid(text: string): string | null {
  const m = new RegExp(`"IOPlatformUUID"\\s*=\\s*"(${UUID})"`).exec(text);
  return m ? m[1]!.toUpperCase() : null;
}

/** Extracts MachineGuid from `reg query HKLM\SOFTWARE\Microsoft\Cryptography /v MachineGuid`. */
export function parseRegMachineGuid(text: string): string | null {
  const guid = regQueryValue(text, "MachineGuid");
  return guid !== null && new RegExp(`^${UUID}$`).test(guid) ? guid.toLowerCase() : null;
}

/** Validates a Linux machine-id file's content: 32 hex digits ("uninitialized" is not an id). */
export function parseMachineIdFile(text: string): string | null {
  const id = text.trim().toLowerCase();
  return /^[0-9a-f]{32}$/.test(id) && !/^0+$/.test(id) ? id : null;
}

/**
 * Windows version from `Deno.osRelease()` ("10.0.22631"). The NT build number is what is reliable:
 * the marketing name is not derivable from it (Server 2019 and Windows 10 1809 share build 17763).
 */
export function parseWindowsRelease(release: string): string | null {
  return /^\d+\.\d+\.\d+$/.test(release.trim()) ? release.trim() : null;
}
