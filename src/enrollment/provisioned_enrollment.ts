/**
 * Enrollment by the service itself: `run` with no identity (a fresh install, a golden image's
 * first boot) or with an identity copied from another host (a clone) enrolls with a provisioned
 * token (`ONECONNECT_ENROLLMENT_TOKEN` or `<state-dir>/enrollment.token`) exactly as `enroll`
 * does. Loaded only then: a steady `run` never loads enrollment.
 */
import type { CommandContext } from "../config/context.ts";
import { ENV_VARS } from "../config/config.ts";
import { SYSTEM_CONFIG_PATH } from "../config/settings.ts";
import { NotEnrolledError } from "../errors.ts";
import { denoFileSystem, lstatOrNull, sameFile } from "../file_system.ts";
import { ENROLLMENT_TOKEN_FILE_NAME, type IdentityStore } from "../state/identity_store.ts";
import { selectRootStore } from "../trust/trust_store.ts";

/** `enroll`'s default retry budget, used for the service's own enrollment too. */
const ENROLL_TIMEOUT_SECONDS = 120;

/** Whether an enrollment token is provisioned (in the environment or the state directory). */
export async function tokenProvisioned(
  ctx: CommandContext,
  store: IdentityStore,
): Promise<boolean> {
  const env = ctx.env(ENV_VARS.enrollmentToken);
  if (env !== undefined && env.trim() !== "") return true;
  const path = store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME);
  return (await lstatOrNull(denoFileSystem, path)) !== null;
}

/** The exit-5 error of a service with neither identity nor token: what to provision, where. */
function notProvisioned(ctx: CommandContext, store: IdentityStore): NotEnrolledError {
  const config = ctx.config.systemConfigFile ?? SYSTEM_CONFIG_PATH;
  return new NotEnrolledError(
    `Not enrolled: provide an enrollment token in ${
      JSON.stringify(store.secretFilePath(ENROLLMENT_TOKEN_FILE_NAME))
    } (or ${ENV_VARS.enrollmentToken}) and the platform URL and CA ("platform_url", "ca_file" or "ca_pin") in ${
      JSON.stringify(config)
    }, or run "oneconnect-agent enroll"`,
  );
}

/** Enrolls with the provisioned token as `enroll` would (same errors, token file deleted). */
async function enrollWithToken(ctx: CommandContext): Promise<void> {
  const caPins = ctx.config.caPins ?? [];
  // Before enroll's modules load: `deno run` builds Deno's root store when it loads them.
  selectRootStore(ctx.config.caFile !== undefined || caPins.length > 0 ? "none" : "system");
  const { enroll } = await import("./enroll.ts");
  await enroll(ctx, { force: false, timeoutSeconds: ENROLL_TIMEOUT_SECONDS, caPins });
}

/**
 * `run` found no identity: enrolls with the provisioned token, or throws exit 5 saying what to
 * provision (the service manager does not restart on 5; the path unit starts it with the token).
 */
export async function enrollProvisioned(ctx: CommandContext, store: IdentityStore): Promise<void> {
  if (!(await tokenProvisioned(ctx, store))) throw notProvisioned(ctx, store);
  ctx.logger.info("Not enrolled yet: enrolling with the provisioned token");
  await enrollWithToken(ctx);
}

/**
 * Overwrites the bytes of `path` in place and syncs them, so the copied private key and bearer do
 * not stay readable on this host's disk after the unlink (as far as the file system rewrites in
 * place; copy-on-write and flash may keep old blocks).
 */
async function overwriteFile(path: string): Promise<void> {
  using file = await Deno.open(path, { write: true });
  const opened = await file.stat();
  const linked = await Deno.lstat(path);
  if (linked.isSymlink || !opened.isFile || !sameFile(opened, linked)) return;
  const zeros = new Uint8Array(opened.size);
  let written = 0;
  while (written < zeros.length) written += await file.write(zeros.subarray(written));
  await file.sync();
}

/**
 * `run` found an identity enrolled on another host and a token is provisioned: discards the copied
 * credential (key and bearer of another host, useless here: the clone guard refuses them), then
 * enrolls this host as a new agent. The caller holds the state lock; `releaseLock` lets it go
 * once the copy is gone, since enroll takes the lock itself.
 */
export async function replaceClonedIdentity(
  ctx: CommandContext,
  store: IdentityStore,
  releaseLock: () => Promise<void>,
): Promise<void> {
  ctx.logger.warn(
    "Identity was enrolled on another host (cloned image?): discarding it and enrolling this host with the provisioned token",
  );
  await overwriteFile(store.identityPath);
  await store.remove();
  await releaseLock();
  await enrollWithToken(ctx);
}
