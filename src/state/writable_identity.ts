/**
 * Opening the identity for writing, the one sequence of `run`, `renew`, `unenroll` and `enroll`:
 * the state directory's permissions audited, the state lock taken, the identity loaded under it,
 * and the clone guard asked whether this host may act with it.
 */
import type { CredentialRejectedError } from "../errors.ts";
import { cloneRefusal } from "./clone_guard.ts";
import type { Identity, IdentityStore } from "./identity_store.ts";
import type { PermissionRepair } from "./permissions.ts";
import { acquireStateLock, type StateLockOptions } from "./state_lock.ts";

/**
 * How the identity is loaded under the lock: `strict` throws what {@linkcode IdentityStore.load}
 * throws, `tolerant` keeps the error (unenroll removes a damaged file all the same), `none` loads
 * nothing (enroll replaces it).
 */
export type IdentityLoad = "strict" | "tolerant" | "none";

/** Options of {@linkcode openIdentityForWriting}. */
export interface OpenIdentityOptions<L extends IdentityLoad> extends StateLockOptions {
  /** Audit (and repair) the state directory's permissions first; default true. */
  audit?: boolean;
  /** The command's own work between the audit and the lock (run: enroll a host with no identity). */
  beforeLock?: () => Promise<void>;
  /** Default `strict`. */
  load?: L;
  /**
   * The clone guard: `verb` names what a clone is refused (e.g. "renew the certificate");
   * `machineId` reads this host's machine id, asked only when the identity records one.
   */
  cloneGuard?: { verb: string; machineId: () => Promise<string | null> };
}

/** The identity opened for writing; disposing of it releases the state lock. */
export interface WritableIdentity<L extends IdentityLoad> extends AsyncDisposable {
  /** The loaded identity (`undefined` when not loaded, or when a tolerant load failed). */
  identity: L extends "strict" ? Identity : Identity | undefined;
  /** Why a tolerant load failed (`undefined` when it did not). */
  loadError: unknown;
  /** What the audit repaired (empty without an audit). */
  repairs: PermissionRepair[];
  /** The clone guard's refusal, for the caller to throw or act on; `null` when allowed. */
  cloned: CredentialRejectedError | null;
  /** Releases the state lock, held until then. */
  release(): Promise<void>;
}

/**
 * Audits the state directory, runs the command's `beforeLock` work, takes the state lock (its
 * loser's message names `options.command` and `options.action`), loads the identity under it and
 * asks the clone guard. A failure after the lock is taken releases it before it is thrown.
 */
export async function openIdentityForWriting<L extends IdentityLoad = "strict">(
  store: IdentityStore,
  options: OpenIdentityOptions<L>,
): Promise<WritableIdentity<L>> {
  const repairs = options.audit === false ? [] : await store.auditPermissions();
  await options.beforeLock?.();
  const lock = await acquireStateLock(store.stateDir, options);
  try {
    let identity: Identity | undefined;
    let loadError: unknown;
    const load = options.load ?? "strict";
    if (load === "strict") identity = await store.load();
    if (load === "tolerant") {
      try {
        identity = await store.load();
      } catch (e) {
        loadError = e;
      }
    }
    const guard = options.cloneGuard;
    const cloned = guard === undefined || identity === undefined || identity.machine_id === null
      ? null
      : cloneRefusal(identity.machine_id, await guard.machineId(), guard.verb);
    return {
      identity: identity as WritableIdentity<L>["identity"],
      loadError,
      repairs,
      cloned,
      release: () => lock.release(),
      [Symbol.asyncDispose]: () => lock.release(),
    };
  } catch (e) {
    await lock.release();
    throw e;
  }
}
