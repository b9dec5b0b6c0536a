/**
 * A real forward proxy for tests: Debian's squid, started in a temp directory with its own config,
 * logs and pid file, in the foreground (`-N`), on two loopback ports: one open, one that requires
 * Basic credentials (checked by squid's own `basic_ncsa_auth` against an `openssl passwd -apr1`
 * file). Stopped (and only it) when disposed.
 */

import { freePort, reachable } from "./helpers.ts";
import { join } from "node:path";

/** Where Debian installs squid. */
export const SQUID_PATH = "/usr/sbin/squid";
const NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth";

/** Whether squid and its Basic helper are installed (tests skip visibly otherwise). */
export function squidAvailable(): boolean {
  try {
    return Deno.statSync(SQUID_PATH).isFile && Deno.statSync(NCSA_AUTH).isFile;
  } catch {
    return false;
  }
}

/** A running squid. */
export interface Squid extends AsyncDisposable {
  /** The open port: `http://127.0.0.1:<port>`. */
  readonly url: URL;
  /** The port that requires `credentials`. */
  readonly authUrl: URL;
  readonly credentials: { username: string; password: string };
  /** squid's access log so far (one line per request, CONNECTs included). */
  accessLog(): Promise<string>;
}

/** Starts squid; rejects with its cache.log when it does not listen within 20 s. */
export async function startSquid(): Promise<Squid> {
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-squid-" });
  // squid drops to the `proxy` user when started as root: it must write its logs here.
  await Deno.chmod(dir, 0o777);
  const credentials = { username: "agent", password: "s3cret-proxy-pass" };
  const hash = await new Deno.Command("openssl", {
    args: ["passwd", "-apr1", credentials.password],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!hash.success) {
    throw new Error(`openssl passwd failed: ${new TextDecoder().decode(hash.stderr)}`);
  }
  const htpasswd = join(dir, "htpasswd");
  await Deno.writeTextFile(
    htpasswd,
    `${credentials.username}:${new TextDecoder().decode(hash.stdout).trim()}\n`,
  );
  await Deno.chmod(htpasswd, 0o644);
  const open = freePort();
  const auth = freePort();
  const config = [
    `http_port 127.0.0.1:${open} name=open`,
    `http_port 127.0.0.1:${auth} name=auth`,
    `pid_filename ${dir}/squid.pid`,
    `access_log stdio:${dir}/access.log`,
    `cache_log ${dir}/cache.log`,
    "cache_store_log none",
    `coredump_dir ${dir}`,
    "cache deny all",
    "cache_mem 4 MB",
    "shutdown_lifetime 0 seconds",
    `auth_param basic program ${NCSA_AUTH} ${htpasswd}`,
    "auth_param basic realm oneconnect-test",
    "acl authed proxy_auth REQUIRED",
    "acl openport myportname open",
    "acl authport myportname auth",
    "http_access allow openport",
    "http_access allow authport authed",
    "http_access deny all",
    "",
  ].join("\n");
  await Deno.writeTextFile(join(dir, "squid.conf"), config);
  const squid = await launchSquid(dir, [open, auth]);
  const stop = async () => {
    await squid.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return {
    url: new URL(`http://127.0.0.1:${open}`),
    authUrl: new URL(`http://127.0.0.1:${auth}`),
    credentials,
    accessLog: () => Deno.readTextFile(join(dir, "access.log")).catch(() => ""),
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Runs squid in the foreground (`-N`) with `dir/squid.conf` until every one of `ports` accepts
 * connections; rejects with squid's stderr and the end of `dir/cache.log` when it exits or does
 * not listen within 20 s. `stop` ends it (SIGTERM, SIGKILL after 5 s) and only it.
 */
export async function launchSquid(
  dir: string,
  ports: number[],
): Promise<{ stop(): Promise<void> }> {
  const child = new Deno.Command(SQUID_PATH, {
    args: ["-N", "-f", join(dir, "squid.conf")],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let ended = false;
  const status = child.status.finally(() => ended = true);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }, 5000);
    await status;
    clearTimeout(killer);
    await stderr.catch(() => "");
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const listening = await Promise.all(ports.map(reachable));
    if (listening.every((ok) => ok)) return { stop };
    if (ended || Date.now() > deadline) {
      const log = await Deno.readTextFile(join(dir, "cache.log")).catch(() => "");
      await stop();
      throw new Error(
        `squid ${ended ? "exited" : "did not listen"}: ${await stderr.catch(() => "")} ${
          log.slice(-2000)
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
