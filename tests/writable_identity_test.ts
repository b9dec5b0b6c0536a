import assert from "node:assert/strict";
import { join } from "node:path";
import { CredentialRejectedError, NotEnrolledError, UsageError } from "../src/errors.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { silentLogger } from "../src/log.ts";
import { LOCK_FILE_NAME, StateLockedError } from "../src/state/state_lock.ts";
import { openIdentityForWriting } from "../src/state/writable_identity.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { exists, rejectsWith, tempDir } from "./_support/helpers.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";

const ca = await createDevCa();
const ENROLLED = "3d1219c7c4c5404aaa1f6d2a48adfda4";
const OTHER = "ffffffffffffffffffffffffffffffff";

const lockOf = (command: string) => ({
  command,
  action: `Cannot ${command}`,
  logger: silentLogger,
});

async function enrolledStore(dir: string, machineId: string | null = null) {
  const store = new IdentityStore(join(dir, "state"));
  const identity = { ...(await makeIdentity(ca)), machine_id: machineId };
  await store.save(identity);
  return { store, identity, lockPath: join(store.stateDir, LOCK_FILE_NAME) };
}

Deno.test("openIdentityForWriting audits, runs beforeLock, then locks and loads the identity", async () => {
  await using dir = await tempDir();
  const { store, identity, lockPath } = await enrolledStore(dir.path);
  await Deno.chmod(store.identityPath, 0o644);
  const seen: string[] = [];
  {
    await using opened = await openIdentityForWriting(store, {
      ...lockOf("renew"),
      beforeLock: async () => {
        // After the audit (the mode is repaired already), before the lock.
        seen.push(`mode ${((await Deno.stat(store.identityPath)).mode! & 0o777).toString(8)}`);
        seen.push(`locked ${await exists(lockPath)}`);
      },
    });
    assert.deepEqual(seen, ["mode 600", "locked false"]);
    assert.deepEqual(opened.identity, identity);
    assert.equal(opened.cloned, null);
    assert.equal(opened.loadError, undefined);
    assert.deepEqual(
      opened.repairs.map((r) => [r.path, r.old_mode, r.new_mode]),
      [[store.identityPath, "0644", "0600"]],
    );
    // Held: another writer is told who holds it, in its own command's words.
    const busy = await rejectsWith(
      openIdentityForWriting(store, lockOf("unenroll")),
      StateLockedError,
    );
    assert.match(
      busy.message,
      /^Cannot unenroll: the identity is in use by oneconnect-agent renew/,
    );
  }
  assert.equal(await exists(lockPath), false, "disposing releases the lock");
});

Deno.test("openIdentityForWriting without audit leaves the modes as they are", async () => {
  await using dir = await tempDir();
  const { store } = await enrolledStore(dir.path);
  await Deno.chmod(store.identityPath, 0o644);
  await using opened = await openIdentityForWriting(store, { ...lockOf("unenroll"), audit: false });
  assert.deepEqual(opened.repairs, []);
  assert.equal((await Deno.stat(store.identityPath)).mode! & 0o777, 0o644);
});

Deno.test("openIdentityForWriting releases the lock when the strict load fails", async () => {
  await using dir = await tempDir();
  const { store, lockPath } = await enrolledStore(dir.path);
  await Deno.writeTextFile(store.identityPath, "{", { mode: 0o600 });
  const error = await rejectsWith(openIdentityForWriting(store, lockOf("renew")), UsageError);
  assert.match(error.message, /^Corrupt identity file ".*": not valid JSON \(truncated\?\)/);
  assert.equal(await exists(lockPath), false);
  // Not enrolled: the load's own error, and no lock left behind either.
  await Deno.remove(store.identityPath);
  await rejectsWith(openIdentityForWriting(store, lockOf("renew")), NotEnrolledError);
  assert.equal(await exists(lockPath), false);
});

Deno.test("openIdentityForWriting keeps a tolerant load's error and loads nothing with none", async () => {
  await using dir = await tempDir();
  const { store, lockPath } = await enrolledStore(dir.path);
  await Deno.writeTextFile(store.identityPath, "", { mode: 0o600 });
  {
    await using opened = await openIdentityForWriting(store, {
      ...lockOf("unenroll"),
      load: "tolerant",
      cloneGuard: { verb: "unenroll", machineId: () => Promise.reject(new Error("not asked")) },
    });
    assert.equal(opened.identity, undefined);
    assert.ok(opened.loadError instanceof UsageError);
    assert.equal(opened.cloned, null);
    assert.equal(await exists(lockPath), true);
  }
  await using none = await openIdentityForWriting(store, { ...lockOf("enroll"), load: "none" });
  assert.equal(none.identity, undefined);
  assert.equal(none.loadError, undefined);
});

Deno.test("openIdentityForWriting asks the clone guard in the caller's words, only when it can tell", async () => {
  await using dir = await tempDir();
  const { store } = await enrolledStore(dir.path, ENROLLED);
  const open = async (machineId: string | null) => {
    await using opened = await openIdentityForWriting(store, {
      ...lockOf("renew"),
      cloneGuard: { verb: "renew the certificate", machineId: () => Promise.resolve(machineId) },
    });
    return opened.cloned;
  };
  const cloned = await open(OTHER);
  assert.ok(cloned instanceof CredentialRejectedError);
  assert.equal(cloned.exitCode, 3);
  assert.match(
    cloned.message,
    /^Refusing to renew the certificate: identity was enrolled on another host/,
  );
  assert.equal(await open(ENROLLED), null);
  assert.equal(await open(null), null, "a host without a machine id proves nothing");

  // An identity without a machine id: this host's is not even read.
  await using other = await tempDir();
  const { store: unbound } = await enrolledStore(other.path, null);
  await using opened = await openIdentityForWriting(unbound, {
    ...lockOf("run"),
    cloneGuard: {
      verb: "send heartbeats",
      machineId: () => Promise.reject(new Error("must not be asked")),
    },
  });
  assert.equal(opened.cloned, null);
});
