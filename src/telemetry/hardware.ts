import type { Virtualization } from "../wire/telemetry_wire.ts";
import { regQueryValue } from "./reg_query.ts";

/** What a machine says it is; each part null when unreadable. */
export interface HardwareIdentity {
  vendor: string | null;
  model: string | null;
  serial: string | null;
}

/** Linux DMI files (product_serial is readable by root only). */
export const DMI_VENDOR = "/sys/class/dmi/id/sys_vendor";
/** DMI product name. */
export const DMI_PRODUCT = "/sys/class/dmi/id/product_name";
/** DMI product serial. */
export const DMI_SERIAL = "/sys/class/dmi/id/product_serial";
/** CPU model, frequency and the `hypervisor` flag. */
export const PROC_CPUINFO = "/proc/cpuinfo";
/** Control groups of PID 1, which name the container runtime inside most containers. */
export const PROC_1_CGROUP = "/proc/1/cgroup";

/**
 * `head` arguments reading every Linux inventory file in one process, each section under a
 * `==> path <==` header; the first 64 lines of /proc/cpuinfo hold the first core's block.
 */
export const LINUX_INVENTORY_ARGS = [
  "-v",
  "-n",
  "64",
  DMI_VENDOR,
  DMI_PRODUCT,
  DMI_SERIAL,
  PROC_CPUINFO,
  PROC_1_CGROUP,
] as const;

/** Files whose presence marks a container (Docker, Podman). */
export const CONTAINER_MARKERS = [
  ["/.dockerenv", "docker"],
  ["/run/.containerenv", "podman"],
] as const;

/** DMI and registry placeholders that vendors ship instead of a value. */
const PLACEHOLDER =
  /^(|0+|none|null|n\/a|na|default string|to be filled by o\.e\.m\.|system serial number|system product name|system manufacturer|not specified|not applicable|unknown|0123456789|123456789)$/i;

/** A trimmed identity string, or null for the empty and placeholder values firmware ships. */
export function identityValue(value: string | undefined | null): string | null {
  if (value === undefined || value === null) return null;
  // deno-lint-ignore no-control-regex
  const v = value.replace(/[\u0000-\u001f]/g, "").trim();
  return PLACEHOLDER.test(v) ? null : v;
}

/**
 * Names of Arm Ltd's cores (implementer 0x41) by `CPU part`, as util-linux's lscpu names them
 * (sys-utils/lscpu-arm.c): arm64 kernels print no `model name`, only these ids.
 */
const ARM_LTD_PARTS: Readonly<Record<string, string>> = {
  "0xd03": "Cortex-A53",
  "0xd04": "Cortex-A35",
  "0xd05": "Cortex-A55",
  "0xd07": "Cortex-A57",
  "0xd08": "Cortex-A72",
  "0xd09": "Cortex-A73",
  "0xd0a": "Cortex-A75",
  "0xd0b": "Cortex-A76",
  "0xd0c": "Neoverse-N1",
  "0xd0d": "Cortex-A77",
  "0xd40": "Neoverse-V1",
  "0xd41": "Cortex-A78",
  "0xd46": "Cortex-A510",
  "0xd47": "Cortex-A710",
  "0xd49": "Neoverse-N2",
  "0xd4f": "Neoverse-V2",
  "0xd80": "Cortex-A520",
  "0xd81": "Cortex-A720",
  "0xd84": "Neoverse-V3",
  "0xd8e": "Neoverse-N3",
};

/** The value of the first `key : value` line of /proc/cpuinfo text; null when absent or empty. */
function cpuinfoField(text: string, key: string): string | null {
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0 || line.slice(0, colon).trim() !== key) continue;
    const value = line.slice(colon + 1).trim();
    return value === "" ? null : value;
  }
  return null;
}

/**
 * CPU model and nominal frequency (MHz) from the first block of Linux /proc/cpuinfo: x86's
 * `model name`; on arm64, an Arm core named from `CPU implementer`/`CPU part`, else the board's
 * `Hardware` line (Raspberry Pi kernels); null for what none of them names.
 */
export function parseCpuinfo(text: string): { model: string | null; mhz: number | null } {
  const part = cpuinfoField(text, "CPU part")?.toLowerCase();
  const armCore = cpuinfoField(text, "CPU implementer")?.toLowerCase() === "0x41" &&
      part !== undefined && ARM_LTD_PARTS[part] !== undefined
    ? `ARM ${ARM_LTD_PARTS[part]}`
    : null;
  const model = cpuinfoField(text, "model name") ?? armCore ?? cpuinfoField(text, "Hardware");
  const mhz = Number(cpuinfoField(text, "cpu MHz") ?? NaN);
  return {
    model: identityValue(model),
    mhz: Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz) : null,
  };
}

/** Whether the CPU flags of /proc/cpuinfo carry `hypervisor` (set by every x86 hypervisor). */
export function cpuinfoHasHypervisorFlag(text: string): boolean {
  // x86 only: arm64 kernels print `Features`, which has no such flag.
  return /\bhypervisor\b/.test(cpuinfoField(text, "flags") ?? "");
}

/** The container runtime named by a `/proc/<pid>/cgroup` file, if any. */
export function containerFromCgroup(text: string): string | null {
  if (/\/kubepods/.test(text)) return "kubernetes";
  if (/\/docker[/-]/.test(text)) return "docker";
  if (/libpod/.test(text)) return "podman";
  if (/\/lxc[/.]/.test(text)) return "lxc";
  if (/containerd/.test(text)) return "containerd";
  return null;
}

const HYPERVISORS: [RegExp, string][] = [
  [/VirtualMac|Apple Virtualization/i, "apple"],
  [/KVM/, "kvm"],
  [/QEMU/i, "qemu"],
  [/VMware/i, "vmware"],
  [/VirtualBox|innotek/i, "virtualbox"],
  [/Parallels/i, "parallels"],
  [/Xen/i, "xen"],
  [/Virtual Machine|Hyper-V/i, "hyper-v"],
  [/Amazon EC2/i, "amazon"],
  [/Google Compute Engine/i, "google"],
  [/BHYVE/i, "bhyve"],
  [/OpenStack/i, "openstack"],
];

/** The hypervisor named by a hardware vendor or model (DMI, ioreg, registry), if any. */
function hypervisorFromHardware(vendor: string | null, model: string | null): string | null {
  const text = `${vendor ?? ""} ${model ?? ""}`;
  return HYPERVISORS.find(([re]) => re.test(text))?.[1] ?? null;
}

/** Vendor, model and serial from `ioreg -rd1 -c IOPlatformExpertDevice` output (macOS). */
export function parseIoregHardware(text: string): HardwareIdentity {
  // Data properties print as <"text">, string properties as "text".
  const get = (key: string) =>
    identityValue(new RegExp(`"${key}"\\s*=\\s*<?"([^"]*)"`).exec(text)?.[1]);
  return {
    vendor: get("manufacturer"),
    model: get("model"),
    serial: get("IOPlatformSerialNumber"),
  };
}

/** Windows registry key with the SMBIOS system identity (the serial is not in the registry). */
export const BIOS_KEY = "HKLM\\HARDWARE\\DESCRIPTION\\System\\BIOS";

/** Vendor and model from `reg query HKLM\HARDWARE\DESCRIPTION\System\BIOS` output. */
export function parseRegBios(text: string): HardwareIdentity {
  const get = (name: string) => identityValue(regQueryValue(text, name));
  return { vendor: get("SystemManufacturer"), model: get("SystemProductName"), serial: null };
}

/** Everything virtualization detection looks at; absent evidence is null. */
export interface VirtualizationEvidence {
  containerMarker: string | null;
  cgroup: string | null;
  hardware: HardwareIdentity | null;
  cpuinfo: string | null;
}

/**
 * Container first (a container on a VM is a container to whoever manages it), then a VM from the
 * hardware identity or the `hypervisor` CPU flag; `none` only when some evidence was readable.
 */
export function detectVirtualization(e: VirtualizationEvidence): Virtualization | null {
  const container = e.containerMarker ?? (e.cgroup === null ? null : containerFromCgroup(e.cgroup));
  if (container !== null) return { kind: "container", technology: container };
  const hypervisor = e.hardware === null
    ? null
    : hypervisorFromHardware(e.hardware.vendor, e.hardware.model);
  if (hypervisor !== null) return { kind: "vm", technology: hypervisor };
  if (e.cpuinfo !== null && cpuinfoHasHypervisorFlag(e.cpuinfo)) {
    return { kind: "vm", technology: null };
  }
  const anyEvidence = e.cgroup !== null || e.cpuinfo !== null ||
    (e.hardware !== null && (e.hardware.vendor !== null || e.hardware.model !== null));
  return anyEvidence ? { kind: "none", technology: null } : null;
}

/** The DNS domain of a fully-qualified host name, and the name itself; null for a bare name. */
export function fqdnOf(hostname: string | null): { fqdn: string | null; domain: string | null } {
  if (hostname === null || !/^[^.\s]+\.[^\s]+[^.]$/.test(hostname)) {
    return { fqdn: null, domain: null };
  }
  return { fqdn: hostname, domain: hostname.slice(hostname.indexOf(".") + 1) };
}
