import { childStdout } from "../child_process.ts";
import type { CoreTimes } from "./cpu_usage.ts";

/** Everything the collector asks of the operating system, injected so tests can drive each branch. */
export interface SystemSeam {
  /** `Deno.build.os`. */
  readonly os: string;
  /** `Deno.build.arch`. */
  readonly arch: string;
  hostname(): string;
  osRelease(): string;
  osUptime(): number;
  loadavg(): number[];
  systemMemoryInfo(): Deno.SystemMemoryInfo;
  networkInterfaces(): Deno.NetworkInterfaceInfo[];
  hardwareConcurrency(): number;
  readTextFile(path: string): Promise<string>;
  /**
   * Runs the program at absolute `path` with an empty environment and resolves to its stdout;
   * rejects on a non-zero exit unless `anyExit` (e.g. `head` exits 1 when one of its files is
   * missing, and still prints the others); killed after `timeoutMs` (default 10 s).
   */
  runCommand(
    path: string,
    args: string[],
    options?: { anyExit?: boolean; timeoutMs?: number },
  ): Promise<string>;
  /**
   * `node:os` `cpus()`: per-core model, MHz and cumulative times; never called on Linux (/proc
   * has them, and node:os would start the Node compat layer). Absent: CPU fields null.
   */
  cpus?(): Promise<{ model: string; speed: number; times: CoreTimes }[]>;
  /** `Deno.readLink`, for the /etc/localtime link that names the system time zone. */
  readLink?(path: string): Promise<string>;
  /** `Deno.build.target`. */
  readonly target?: string;
}

const COMMAND_TIMEOUT_MS = 10_000;

/** The real operating system, through Deno's APIs. */
export const denoSystem: SystemSeam = {
  os: Deno.build.os,
  arch: Deno.build.arch,
  hostname: () => Deno.hostname(),
  osRelease: () => Deno.osRelease(),
  osUptime: () => Deno.osUptime(),
  loadavg: () => Deno.loadavg(),
  systemMemoryInfo: () => Deno.systemMemoryInfo(),
  networkInterfaces: () => Deno.networkInterfaces(),
  hardwareConcurrency: () => navigator.hardwareConcurrency,
  readTextFile: (path) => Deno.readTextFile(path),
  // The C locale of childStdout's cleared environment gives the output the parsers expect.
  runCommand: (path, args, options) =>
    childStdout(path, args, {
      timeoutMs: options?.timeoutMs ?? COMMAND_TIMEOUT_MS,
      anyExit: options?.anyExit,
    }),
  // Loaded on first use only: on Linux nothing calls it, so a steady run stays off node:os.
  cpus: async () => (await import("node:os")).cpus(),
  // Not Intl.DateTimeFormat().resolvedOptions().timeZone: loading ICU data costs RSS in every
  // steady run (docs/footprint.md).
  readLink: (path) => Deno.readLink(path),
  target: Deno.build.target,
};
