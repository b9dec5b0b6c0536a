/** Where root keeps the agent's state by default: the system-wide state directory. */

/** The variable that moves {@linkcode systemStateDir} (tests, unusual layouts). */
export const SYSTEM_STATE_DIR_ENV = "ONECONNECT_SYSTEM_STATE_DIR";

/**
 * The system-wide state directory root uses by default; `null` on Windows, where every user
 * shares one directory. `ONECONNECT_SYSTEM_STATE_DIR` moves it.
 */
export function systemStateDir(host: {
  env: (name: string) => string | undefined;
  os: typeof Deno.build.os;
}): string | null {
  const moved = host.env(SYSTEM_STATE_DIR_ENV);
  if (moved !== undefined && moved.trim() !== "") return moved;
  if (host.os === "windows") return null;
  return host.os === "darwin"
    ? "/Library/Application Support/OneConnect Agent"
    : "/var/lib/oneconnect-agent";
}
