/**
 * "Forgot sudo": a user whose own state directory holds no identity while root's does must be
 * told to run as root, never to enroll (that would register the same host a second time).
 *
 * @module
 */
import { systemStateDir } from "./system_state_dir.ts";
import { join, resolve } from "../file_system.ts";
import { IDENTITY_FILE_NAME } from "./identity_store.ts";

/** What {@linkcode rootIdentityHint} needs from the host. */
export type RootIdentityHost = {
  env: (name: string) => string | undefined;
  os: typeof Deno.build.os;
  uid: () => number | null;
  lstat: (path: string) => Promise<Deno.FileInfo>;
};

/** The real host. */
const denoRootIdentityHost: RootIdentityHost = {
  env: (name) => Deno.env.get(name),
  os: Deno.build.os,
  uid: () => Deno.uid(),
  lstat: (path) => Deno.lstat(path),
};

/**
 * The "not enrolled" message for a non-root user whose `stateDir` holds no identity when the
 * system state directory holds one, or exists and cannot be read; `null` when it does neither
 * (then enrolling is the right advice). `command` is what to rerun as root.
 */
export async function rootIdentityHint(
  stateDir: string,
  command: string,
  host: RootIdentityHost = denoRootIdentityHost,
): Promise<string | null> {
  const uid = host.uid();
  const system = systemStateDir(host);
  if (uid === 0 || uid === null || system === null || resolve(stateDir) === resolve(system)) {
    return null;
  }
  const rerun =
    `run as root instead (sudo oneconnect-agent ${command}); enrolling as this user would register this host a second time`;
  const head = `Not enrolled as this user (no identity in ${JSON.stringify(stateDir)})`;
  try {
    await host.lstat(join(system, IDENTITY_FILE_NAME));
    return `${head}, but the system state directory ${JSON.stringify(system)} holds one: ${rerun}`;
  } catch (e) {
    if (!(e instanceof Deno.errors.PermissionDenied)) return null;
  }
  return `${head}, and the system state directory ${
    JSON.stringify(system)
  } exists but this user (uid ${uid}) cannot read it: ${rerun}`;
}
