/** The `versions.json` entry: agent, runtime, target, OS, kernel, uptime, service manager. */
import { errorMessage } from "../errors.ts";
import { VERSION } from "../version.ts";
import type { DiagnosticEntry, Unreadable } from "./manifest.ts";

/** Variables a service manager sets in its services' environment; names only are reported. */
const SERVICE_MANAGER_VARS = {
  systemd: ["INVOCATION_ID", "JOURNAL_STREAM"],
  launchd: ["XPC_SERVICE_NAME"],
} as const;

/** What the versions collector reads from the host (a seam for tests). */
export interface VersionsHost {
  env: (name: string) => string | undefined;
  osRelease: () => string;
  osUptime: () => number;
}

/** The real host. */
export const denoVersionsHost: Omit<VersionsHost, "env"> = {
  osRelease: () => Deno.osRelease(),
  osUptime: () => Deno.osUptime(),
};

/** Which service manager started this process, judged by the variables it sets. */
function serviceManager(env: (name: string) => string | undefined): string | null {
  for (const [manager, names] of Object.entries(SERVICE_MANAGER_VARS)) {
    // launchd sets XPC_SERVICE_NAME=0 in a Terminal session: only a real label counts.
    if (names.some((n) => (env(n) ?? "0") !== "0" && env(n) !== "")) return manager;
  }
  return null;
}

/** The `versions.json` entry. */
export function versionsEntry(
  host: VersionsHost,
): { entry: DiagnosticEntry; unreadable: Unreadable[] } {
  const unreadable: Unreadable[] = [];
  const read = <T>(what: string, fn: () => T): T | null => {
    try {
      return fn();
    } catch (e) {
      unreadable.push({ what, reason: errorMessage(e) });
      return null;
    }
  };
  return {
    entry: {
      name: "versions.json",
      source: "the agent's build, Deno.version, Deno.build, Deno.osRelease(), Deno.osUptime()",
      noSecret: "version strings, the kernel release and uptime; variable names only",
      content: {
        agent: VERSION,
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        typescript: Deno.version.typescript,
        target: Deno.build.target,
        os: Deno.build.os,
        arch: Deno.build.arch,
        kernel: read("kernel release", host.osRelease),
        uptime_seconds: read("uptime", host.osUptime),
        service_manager: serviceManager(host.env),
        service_manager_variables_set: Object.values(SERVICE_MANAGER_VARS).flat()
          .filter((n) => host.env(n) !== undefined),
      },
    },
    unreadable,
  };
}
