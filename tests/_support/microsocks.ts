/**
 * A real SOCKS5 server for the proxy tests: Debian's `microsocks`, on 127.0.0.1 at an ephemeral
 * port, optionally requiring a user and password; stopped (by its own pid) when disposed.
 *
 * @module
 */
import { findTool, freePort, reachable, until } from "./helpers.ts";

/** Path of microsocks, or null when it is not installed. */
export const MICROSOCKS = findTool("microsocks");

/** A running microsocks. */
export interface Microsocks extends AsyncDisposable {
  readonly port: number;
  /** `socks5://127.0.0.1:<port>` (no credentials). */
  readonly address: string;
}

/** Starts microsocks; with `auth`, every client must send that user and password. */
export async function startMicrosocks(
  auth?: { user: string; password: string },
): Promise<Microsocks> {
  const port = freePort();
  const child = new Deno.Command(MICROSOCKS!, {
    args: [
      "-i",
      "127.0.0.1",
      "-p",
      String(port),
      ...(auth ? ["-u", auth.user, "-P", auth.password] : []),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await until(() => reachable(port), `microsocks on port ${port}`);
  return {
    port,
    address: `socks5://127.0.0.1:${port}`,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
    },
  };
}
