import { deepEqual, equal } from "node:assert/strict";
import {
  containerFromCgroup,
  cpuinfoHasHypervisorFlag,
  detectVirtualization,
  DMI_PRODUCT,
  DMI_SERIAL,
  DMI_VENDOR,
  fqdnOf,
  identityValue,
  parseCpuinfo,
  parseIoregHardware,
  parseRegBios,
  PROC_1_CGROUP,
  PROC_CPUINFO,
} from "../src/telemetry/hardware.ts";
import { parseHeadSections } from "../src/telemetry/proc_reader.ts";
import { telemetryFixture } from "./_support/helpers.ts";

function linuxEvidence(file: string, containerMarker: string | null = null) {
  const s = parseHeadSections(telemetryFixture(file));
  const hardware = {
    vendor: identityValue(s.get(DMI_VENDOR)),
    model: identityValue(s.get(DMI_PRODUCT)),
    serial: identityValue(s.get(DMI_SERIAL)),
  };
  const cpuinfo = s.get(PROC_CPUINFO) ?? null;
  const cgroup = s.get(PROC_1_CGROUP) ?? null;
  return { sections: s, hardware, cpuinfo, cgroup, containerMarker };
}

Deno.test("head -v sections of a physical Linux host give vendor, model, serial and CPU", () => {
  const e = linuxEvidence("linux_head_physical.txt");
  deepEqual(e.hardware, { vendor: "Dell Inc.", model: "Latitude 7420", serial: "4XK2LM3" });
  deepEqual(parseCpuinfo(e.cpuinfo!), {
    model: "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
    mhz: 1800,
  });
  equal(e.cgroup, "0::/init.scope");
  deepEqual(detectVirtualization(e), { kind: "none", technology: null });
});

Deno.test("a QEMU guest is a vm by its DMI vendor; its placeholder serial is null", () => {
  const e = linuxEvidence("linux_head_qemu_vm.txt");
  deepEqual(e.hardware, {
    vendor: "QEMU",
    model: "Standard PC (Q35 + ICH9, 2009)",
    serial: null,
  });
  deepEqual(detectVirtualization(e), { kind: "vm", technology: "qemu" });
  // Without DMI, the CPU's hypervisor flag still tells a VM.
  deepEqual(detectVirtualization({ ...e, hardware: null }), { kind: "vm", technology: null });
});

Deno.test("this container's recorded head output has no DMI and is a docker container", () => {
  const e = linuxEvidence("linux_head_container.txt", "docker");
  equal(e.sections.has(DMI_VENDOR), false);
  deepEqual(e.hardware, { vendor: null, model: null, serial: null });
  deepEqual(parseCpuinfo(e.cpuinfo!), { model: "AMD EPYC", mhz: 2596 });
  deepEqual(detectVirtualization(e), { kind: "container", technology: "docker" });
  // Without /.dockerenv this cgroup v1 file names nothing: the hypervisor flag remains.
  deepEqual(detectVirtualization({ ...e, containerMarker: null }), {
    kind: "vm",
    technology: null,
  });
});

Deno.test("container runtimes are named from cgroup paths", () => {
  equal(containerFromCgroup("12:pids:/docker/3f4e5d\n0::/"), "docker");
  equal(containerFromCgroup("0::/system.slice/docker-3f4e5d.scope"), "docker");
  equal(containerFromCgroup("0::/kubepods/besteffort/pod1/abc"), "kubernetes");
  equal(containerFromCgroup("0::/machine.slice/libpod-abc.scope"), "podman");
  equal(containerFromCgroup("0::/lxc/web1"), "lxc");
  equal(containerFromCgroup("0::/init.scope"), null);
});

Deno.test("no readable evidence gives null virtualization, not none", () => {
  equal(
    detectVirtualization({ containerMarker: null, cgroup: null, hardware: null, cpuinfo: null }),
    null,
  );
});

Deno.test("macOS ioreg output gives vendor, model and serial", () => {
  const hw = parseIoregHardware(telemetryFixture("macos_ioreg_platform.txt"));
  deepEqual(hw, { vendor: "Apple Inc.", model: "MacBookPro18,3", serial: "C02XJ0J5ML8" });
  deepEqual(
    detectVirtualization({ containerMarker: null, cgroup: null, hardware: hw, cpuinfo: null }),
    { kind: "none", technology: null },
  );
  const vm = parseIoregHardware('"model" = <"VirtualMac2,1">\n"manufacturer" = <"Apple Inc.">');
  deepEqual(
    detectVirtualization({ containerMarker: null, cgroup: null, hardware: vm, cpuinfo: null }),
    { kind: "vm", technology: "apple" },
  );
});

Deno.test("Windows BIOS registry values give vendor and model; Hyper-V is a vm", () => {
  deepEqual(parseRegBios(telemetryFixture("windows_reg_bios.txt")), {
    vendor: "Dell Inc.",
    model: "Latitude 7420",
    serial: null,
  });
  const hv = parseRegBios(telemetryFixture("windows_reg_bios_hyperv.txt"));
  deepEqual(
    detectVirtualization({ containerMarker: null, cgroup: null, hardware: hv, cpuinfo: null }),
    { kind: "vm", technology: "hyper-v" },
  );
  deepEqual(parseRegBios("ERROR: The system was unable to find the specified registry key"), {
    vendor: null,
    model: null,
    serial: null,
  });
});

Deno.test("firmware placeholders and control characters are not identities", () => {
  for (const v of ["", "  ", "Default string", "To Be Filled By O.E.M.", "0", "Not Specified"]) {
    equal(identityValue(v), null, v);
  }
  equal(identityValue(" ABC123\u0000\n"), "ABC123");
});

Deno.test("fqdn and domain come from a dotted host name only", () => {
  deepEqual(fqdnOf("web-1.eu.example.com"), {
    fqdn: "web-1.eu.example.com",
    domain: "eu.example.com",
  });
  deepEqual(fqdnOf("web-1"), { fqdn: null, domain: null });
  deepEqual(fqdnOf("web-1."), { fqdn: null, domain: null });
  deepEqual(fqdnOf(null), { fqdn: null, domain: null });
});

Deno.test("Wine's reg query with empty BIOS values gives null, not the next line's name", () => {
  // Recorded from Wine 8.0's real reg.exe (see tests/fixtures/telemetry/README.md): every REG_SZ
  // value is empty, so the line ends after `REG_SZ    ` and the next line is a neighbour's name.
  deepEqual(parseRegBios(telemetryFixture("wine_reg_bios.txt")), {
    vendor: null,
    model: null,
    serial: null,
  });
  // The same with Unix line ends, and with the value line as the very last one.
  deepEqual(
    parseRegBios(
      "HKEY_LOCAL_MACHINE\\HARDWARE\\DESCRIPTION\\System\\BIOS\n" +
        "    SystemManufacturer    REG_SZ    \n    SystemProductName    REG_SZ",
    ),
    { vendor: null, model: null, serial: null },
  );
  // A value of another type under the name is not a string value.
  deepEqual(
    parseRegBios(
      "    SystemManufacturer    REG_DWORD    0x1\n    SystemProductName    REG_SZ    X1",
    ),
    { vendor: null, model: "X1", serial: null },
  );
});

Deno.test("arm64 /proc/cpuinfo: no model name or flags, the core named from implementer and part", () => {
  // Neoverse-N1 (AWS Graviton2) and a Raspberry Pi 4: the kernel prints `CPU implementer` and
  // `CPU part`, never `model name`, `cpu MHz` or `flags` (fixtures README).
  deepEqual(parseCpuinfo(telemetryFixture("linux_cpuinfo_arm64_neoverse_n1.txt")), {
    model: "ARM Neoverse-N1",
    mhz: null,
  });
  const pi = telemetryFixture("linux_cpuinfo_arm64_rpi4.txt");
  deepEqual(parseCpuinfo(pi), { model: "ARM Cortex-A72", mhz: null });
  // No `flags` line: no hypervisor evidence from the CPU; DMI and cgroups still decide.
  equal(cpuinfoHasHypervisorFlag(pi), false);
  deepEqual(
    detectVirtualization({ containerMarker: null, cgroup: null, hardware: null, cpuinfo: pi }),
    { kind: "none", technology: null },
  );
  // A core of another implementer is not guessed: the board's Hardware line, else null.
  const kryo = "CPU implementer\t: 0x51\nCPU part\t: 0x805\n";
  deepEqual(parseCpuinfo(`${kryo}Hardware\t: Qualcomm Technologies, Inc SM8150\n`), {
    model: "Qualcomm Technologies, Inc SM8150",
    mhz: null,
  });
  deepEqual(parseCpuinfo(kryo), { model: null, mhz: null });
});

Deno.test("/proc/cpuinfo: an empty value is null, never the next line's text", () => {
  deepEqual(parseCpuinfo("model name\t: \ncpu MHz\t\t: 2445.432\n"), { model: null, mhz: 2445 });
  deepEqual(parseCpuinfo("Hardware\t:\nRevision\t: c03114\n"), { model: null, mhz: null });
  deepEqual(parseCpuinfo("cpu MHz\t\t:\n1800\n"), { model: null, mhz: null });
  equal(cpuinfoHasHypervisorFlag("flags\t\t:\nhypervisor\t: yes\n"), false);
});
