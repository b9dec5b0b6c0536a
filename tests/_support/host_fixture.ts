import type { Host } from "../../src/wire/telemetry_wire.ts";

/** A complete Linux host inventory for tests; spread it to vary a field (`{ ...TEST_HOST, ... }`). */
export const TEST_HOST: Host = {
  hostname: "test-host",
  os: "linux",
  arch: "x86_64",
  os_release: "6.1.0",
  os_name: "Debian GNU/Linux",
  os_version: "12",
  cpu_count: 2,
  machine_id: "0123456789abcdef0123456789abcdef",
  network_interfaces: [],
};
