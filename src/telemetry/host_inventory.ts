import type { HardwareIdentity } from "./hardware.ts";
import {
  BIOS_KEY,
  CONTAINER_MARKERS,
  detectVirtualization,
  DMI_PRODUCT,
  DMI_SERIAL,
  DMI_VENDOR,
  fqdnOf,
  identityValue,
  LINUX_INVENTORY_ARGS,
  parseCpuinfo,
  parseIoregHardware,
  parseRegBios,
  PROC_1_CGROUP,
  PROC_CPUINFO,
} from "./hardware.ts";
import {
  DEBIAN_TIMEZONE,
  IOREG,
  LOCALTIME,
  MACHINE_ID_FILES,
  OS_RELEASE_FILES,
  parseIoregPlatformUuid,
  parseMachineIdFile,
  parseOsRelease,
  parseRegMachineGuid,
  parseRegTimeZone,
  parseSwVers,
  parseWindowsRelease,
  REG_EXE,
  SW_VERS,
  TIME_ZONE_KEY,
  zoneFromLocaltimeLink,
} from "./os_release.ts";
import { readHeads } from "./proc_reader.ts";
import type { Host, NetworkInterface, Virtualization } from "../wire/telemetry_wire.ts";
import type { SourceFailures } from "./source_failures.ts";
import type { SystemSeam } from "./system.ts";
import { errorMessage } from "../errors.ts";
import { isoTime } from "../iso_time.ts";

/** Whether `address` is loopback or link-local, i.e. not reachable from beyond this host or link. */
function isInternalAddress(family: string, address: string): boolean {
  if (family === "IPv4") return /^127\./.test(address) || /^169\.254\./.test(address);
  const a = address.toLowerCase();
  return a === "::1" || /^fe[89ab][0-9a-f]:/.test(a);
}

function nonEmpty(value: string): string | null {
  const v = value.trim();
  return v === "" || v === "Unknown" ? null : v;
}

interface StaticFacts {
  os_release: string | null;
  os_name: string | null;
  os_version: string | null;
  machine_id: string | null;
  cpu_count: number | null;
  cpu_model: string | null;
  cpu_mhz: number | null;
  hardware: HardwareIdentity;
  boot_time: string | null;
  time_zone: string | null;
  virtualization: Virtualization | null;
}

/** What the platform-specific inventory sources yielded (Linux /sys and /proc, ioreg, registry). */
interface PlatformFacts {
  hardware: HardwareIdentity;
  cpuinfo: string | null;
  cgroup: string | null;
  containerMarker: string | null;
  /** The platform's source failed as a whole (and said so). */
  failed: boolean;
}

const NO_HARDWARE: HardwareIdentity = { vendor: null, model: null, serial: null };

/**
 * Host inventory. Static facts (OS release, name and version, machine id, CPU, hardware, boot
 * time, time zone, virtualization) are read once per instance, which lives as long as the
 * process; hostname and addresses are read at each call.
 */
export class HostInventory {
  readonly #system: SystemSeam;
  readonly #failures: SourceFailures;
  readonly #nowMs: () => number;
  #static: Promise<StaticFacts> | undefined;
  #ioreg: Promise<string> | undefined;

  constructor(system: SystemSeam, failures: SourceFailures, nowMs: () => number) {
    this.#system = system;
    this.#failures = failures;
    this.#nowMs = nowMs;
  }

  /** Host inventory: static facts from the cache, hostname and addresses read fresh. */
  async host(): Promise<Host> {
    this.#static ??= this.#readStatic();
    const facts = await this.#static;
    const sys = this.#system;
    const hostname = this.#failures.try("hostname", () => nonEmpty(sys.hostname()));
    const { fqdn, domain } = fqdnOf(hostname);
    return {
      hostname,
      os: sys.os,
      arch: sys.arch,
      os_release: facts.os_release,
      os_name: facts.os_name,
      os_version: facts.os_version,
      cpu_count: facts.cpu_count,
      machine_id: facts.machine_id,
      network_interfaces: this.#failures.try("network_interfaces", () => this.#interfaces()),
      cpu_model: facts.cpu_model,
      cpu_mhz: facts.cpu_mhz,
      hardware_vendor: facts.hardware.vendor,
      hardware_model: facts.hardware.model,
      hardware_serial: facts.hardware.serial,
      boot_time: facts.boot_time,
      time_zone: facts.time_zone,
      fqdn,
      domain,
      virtualization: facts.virtualization,
      agent_platform: sys.target ?? null,
    };
  }

  async #readStatic(): Promise<StaticFacts> {
    const sys = this.#system;
    // The kernel release only changes with a reboot, which restarts the agent too.
    const os_release = this.#failures.try("os_release", () => nonEmpty(sys.osRelease()));
    const cpu_count = this.#failures.try("cpu_count", () => {
      const n = sys.hardwareConcurrency();
      return Number.isInteger(n) && n > 0 ? n : null;
    });
    const boot_time = this.#failures.try("boot_time", () => {
      const up = sys.osUptime();
      if (!Number.isFinite(up) || up < 0) return null;
      const at = Math.floor((this.#nowMs() - up * 1000) / 1000) * 1000;
      return isoTime(at).replace(".000Z", "Z");
    });
    const [release, machine_id, platform, time_zone] = await Promise.all([
      this.#failures.tryAsync("os_name", () => this.#osNameVersion(os_release)),
      this.#failures.tryAsync("machine_id", () => this.#machineId()),
      this.#platformFacts(),
      this.#failures.tryAsync("time_zone", () => this.#timeZone()),
    ]);
    // Linux: /proc/cpuinfo (read by head) only, so node:os never loads there; elsewhere os.cpus().
    const cpuinfo = platform.cpuinfo === null ? null : parseCpuinfo(platform.cpuinfo);
    const firstCore = sys.os === "linux"
      ? null
      : await this.#failures.tryAsync("cpu_model", async () => (await sys.cpus?.())?.[0] ?? null);
    const cpu_model = cpuinfo?.model ?? identityValue(firstCore?.model);
    const speed = firstCore?.speed;
    const cpu_mhz = cpuinfo?.mhz ??
      (speed !== undefined && Number.isInteger(speed) && speed > 0 ? speed : null);
    const hardware = platform.hardware;
    // A failed source already said why; a source that ran but lacked a value says so per field.
    if (!platform.failed) {
      for (const [field, value] of Object.entries(hardware)) {
        if (value === null) this.#failures.fail(`hardware_${field}`, "no usable value");
      }
    }
    if (cpu_mhz === null) this.#failures.fail("cpu_mhz", "no usable value");
    const virtualization = detectVirtualization({
      containerMarker: platform.containerMarker,
      cgroup: platform.cgroup,
      hardware,
      cpuinfo: platform.cpuinfo,
    });
    if (virtualization === null && !platform.failed) {
      this.#failures.fail("virtualization", "no evidence readable");
    }
    return {
      os_release,
      os_name: release?.name ?? null,
      os_version: release?.version ?? null,
      machine_id,
      cpu_count,
      cpu_model,
      cpu_mhz,
      hardware,
      boot_time,
      time_zone,
      virtualization,
    };
  }

  /** Hardware identity and virtualization evidence; every part null when unreadable. */
  async #platformFacts(): Promise<PlatformFacts> {
    const sys = this.#system;
    const facts: PlatformFacts = {
      hardware: NO_HARDWARE,
      cpuinfo: null,
      cgroup: null,
      containerMarker: null,
      failed: false,
    };
    try {
      switch (sys.os) {
        case "linux": {
          for (const [path, technology] of CONTAINER_MARKERS) {
            const present = await sys.readTextFile(path).then(() => true, () => false);
            if (present) {
              facts.containerMarker = technology;
              break;
            }
          }
          // One process for all files; an unreadable one (no DMI in containers, the serial to
          // non-root) only lacks its section.
          const sections = await readHeads(sys, LINUX_INVENTORY_ARGS);
          facts.hardware = {
            vendor: identityValue(sections.get(DMI_VENDOR)),
            model: identityValue(sections.get(DMI_PRODUCT)),
            serial: identityValue(sections.get(DMI_SERIAL)),
          };
          facts.cpuinfo = sections.get(PROC_CPUINFO) ?? null;
          facts.cgroup = sections.get(PROC_1_CGROUP) ?? null;
          break;
        }
        case "darwin":
          facts.hardware = parseIoregHardware(await this.#ioregPlatform());
          break;
        case "windows":
          facts.hardware = parseRegBios(await sys.runCommand(REG_EXE, ["query", BIOS_KEY]));
          break;
      }
    } catch (error) {
      this.#failures.fail("hardware", error);
      facts.failed = true;
    }
    return facts;
  }

  /**
   * The system time zone: the IANA name the /etc/localtime link points at (Linux, macOS), else
   * Debian's /etc/timezone; on Windows the registry's zone key name ("W. Europe Standard Time").
   */
  async #timeZone(): Promise<string | null> {
    const sys = this.#system;
    if (sys.os === "windows") {
      return parseRegTimeZone(
        await sys.runCommand(REG_EXE, ["query", TIME_ZONE_KEY, "/v", "TimeZoneKeyName"]),
      );
    }
    const link = await sys.readLink?.(LOCALTIME).catch(() => null);
    const zone = link ? zoneFromLocaltimeLink(link) : null;
    if (zone !== null || sys.os !== "linux") return zone;
    return nonEmpty(await sys.readTextFile(DEBIAN_TIMEZONE));
  }

  /** `ioreg` output for the platform device, run once for the machine id and the hardware. */
  #ioregPlatform(): Promise<string> {
    this.#ioreg ??= this.#system.runCommand(IOREG, ["-rd1", "-c", "IOPlatformExpertDevice"]);
    return this.#ioreg;
  }

  async #osNameVersion(
    osRelease: string | null,
  ): Promise<{ name: string | null; version: string | null } | null> {
    const sys = this.#system;
    switch (sys.os) {
      case "linux": {
        const text = await this.#firstReadable(OS_RELEASE_FILES);
        const fields = parseOsRelease(text);
        // os-release(5): NAME defaults to "Linux"; VERSION_ID is absent on rolling releases.
        return { name: fields.get("NAME") || "Linux", version: fields.get("VERSION_ID") || null };
      }
      case "darwin": {
        const parsed = parseSwVers(await sys.runCommand(SW_VERS, []));
        return parsed.name === null && parsed.version === null ? null : parsed;
      }
      case "windows": {
        const version = osRelease === null ? null : parseWindowsRelease(osRelease);
        return version === null ? null : { name: "Windows", version };
      }
      default:
        return { name: null, version: null };
    }
  }

  async #machineId(): Promise<string | null> {
    const sys = this.#system;
    switch (sys.os) {
      case "linux": {
        const problems: string[] = [];
        for (const path of MACHINE_ID_FILES) {
          try {
            const id = parseMachineIdFile(await sys.readTextFile(path));
            if (id !== null) return id;
            problems.push(`${path}: not a machine id`);
          } catch (error) {
            problems.push(errorMessage(error));
          }
        }
        throw new Error(problems.join("; "));
      }
      case "darwin":
        return parseIoregPlatformUuid(await this.#ioregPlatform());
      case "windows":
        return parseRegMachineGuid(
          await sys.runCommand(REG_EXE, [
            "query",
            "HKLM\\SOFTWARE\\Microsoft\\Cryptography",
            "/v",
            "MachineGuid",
            "/reg:64",
          ]),
        );
      default:
        return null;
    }
  }

  async #firstReadable(paths: readonly string[]): Promise<string> {
    const problems: string[] = [];
    for (const path of paths) {
      try {
        return await this.#system.readTextFile(path);
      } catch (error) {
        problems.push(errorMessage(error));
      }
    }
    throw new Error(problems.join("; "));
  }

  #interfaces(): NetworkInterface[] {
    const out: NetworkInterface[] = [];
    for (const nic of this.#system.networkInterfaces()) {
      if (nic.family !== "IPv4" && nic.family !== "IPv6") continue;
      out.push({
        name: nic.name,
        family: nic.family,
        address: nic.address,
        mac: nic.mac,
        internal: isInternalAddress(nic.family, nic.address),
      });
    }
    return out;
  }
}
