import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveConfig } from "../src/config/config.ts";
import { AgentError, ExitCode, UsageError } from "../src/errors.ts";
import { IdentityStore } from "../src/state/identity_store.ts";
import { denoOwnershipHost } from "../src/state/ownership.ts";
import { denoFileSystem } from "../src/file_system.ts";
import { resolveToken } from "../src/enrollment/enrollment_token.ts";
import { testContext } from "./_support/context_fixture.ts";
import { requireSafeMetricsDir } from "../src/state/metrics_file.ts";
import { createDevCa } from "../tasks/dev_platform/dev_ca.ts";
import { rejectsWith, runAgent, skipWithout, tempDir } from "./_support/helpers.ts";
import { makeIdentity } from "./_support/identity_fixture.ts";

// Tests run as root here; "another user" is nobody. Temp dirs live under /tmp, whose parent is
// world-writable but sticky: allowed, as by OpenSSH's StrictModes.
const NOBODY = 65534;
const asRoot = Deno.build.os !== "windows" && Deno.uid() === 0;
const skip = !asRoot;

const failure = (promise: Promise<unknown>) => rejectsWith(promise, AgentError);

const mode = async (path: string) => (await Deno.lstat(path)).mode! & 0o7777;

Deno.test({
  name: "a state directory owned by another user is refused with the fix, never chmod-ed to ours",
  ignore: skipWithout(!skip),
  fn: async () => {
    await using dir = await tempDir();
    const stateDir = join(dir.path, "state");
    await Deno.mkdir(stateDir);
    await Deno.chmod(stateDir, 0o777);
    await Deno.chown(stateDir, NOBODY, NOBODY);
    const store = new IdentityStore(stateDir);
    for (const attempt of [() => store.auditPermissions(), () => store.ensureStateDir()]) {
      const error = await failure(attempt());
      assert.ok(error instanceof UsageError);
      assert.equal(
        error.message,
        `Refusing ${
          JSON.stringify(stateDir)
        }: it is owned by uid ${NOBODY}, not by uid 0 (this user) or root, so that user controls it; check its contents, then as root run: chown -R 0 ${stateDir}`,
      );
      assert.equal(await mode(stateDir), 0o777, "someone else's directory is left as it was");
    }
  },
});

Deno.test({
  name: "run and status refuse a state directory owned by another user: exit 2, one line",
  ignore: skipWithout(!skip),
  fn: async () => {
    await using dir = await tempDir();
    const stateDir = join(dir.path, "state");
    await new IdentityStore(stateDir).save(await makeIdentity(await createDevCa()));
    await Deno.chmod(stateDir, 0o777);
    await Deno.chown(stateDir, NOBODY, NOBODY);
    for (const args of [["run", "--once"], ["status"]]) {
      const r = await runAgent(["--state-dir", stateDir, ...args]);
      assert.equal(r.code, ExitCode.usage, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^error: Refusing ".*": it is owned by uid 65534.*chown -R 0 /);
      assert.equal(await mode(stateDir), 0o777);
    }
  },
});

Deno.test({
  name: "a secret file owned by another user is refused on load and on audit",
  ignore: skipWithout(!skip),
  fn: async () => {
    await using dir = await tempDir();
    const store = new IdentityStore(join(dir.path, "state"));
    await store.save(await makeIdentity(await createDevCa()));
    await Deno.chown(store.identityPath, NOBODY, NOBODY);
    for (const attempt of [() => store.load(), () => store.auditPermissions()]) {
      const error = await failure(attempt());
      assert.ok(error instanceof UsageError);
      assert.match(error.message, /identity\.json": it is owned by uid 65534.*chown 0 /);
    }
    const token = store.secretFilePath("enrollment.token");
    await Deno.chown(store.identityPath, 0, 0);
    await Deno.writeTextFile(token, "tok", { mode: 0o600 });
    await Deno.chown(token, NOBODY, NOBODY);
    assert.match(
      (await failure(store.auditPermissions())).message,
      /enrollment\.token": it is owned/,
    );
  },
});

Deno.test({
  name: "a parent directory writable by others is refused unless sticky",
  ignore: skipWithout(!skip),
  fn: async () => {
    await using dir = await tempDir();
    const parent = join(dir.path, "shared");
    const stateDir = join(parent, "state");
    await new IdentityStore(stateDir).save(await makeIdentity(await createDevCa()));
    await Deno.chmod(parent, 0o777);
    const store = new IdentityStore(stateDir);
    for (const attempt of [() => store.load(), () => store.auditPermissions()]) {
      const error = await failure(attempt());
      assert.equal(error.exitCode, ExitCode.usage);
      assert.equal(
        error.message,
        `Refusing state directory ${JSON.stringify(stateDir)}: the directory ${
          JSON.stringify(parent)
        } above it is writable by group or others (mode 0777), who could replace it; as its owner or root run: chmod go-w ${parent}`,
      );
    }
    // A missing state directory below it is refused before it is created.
    const fresh = new IdentityStore(join(parent, "new", "state"));
    assert.match((await failure(fresh.ensureStateDir())).message, /writable by group or others/);
    await Deno.chmod(parent, 0o1777);
    await store.load();
    await Deno.chmod(parent, 0o755);
    await Deno.chown(parent, NOBODY, NOBODY);
    assert.match((await failure(store.load())).message, /above it is owned by uid 65534/);
  },
});

/** A 0700 state directory under `root`, its agent.json path, and an attacker's config beside it. */
async function configFixture(root: string) {
  const stateDir = join(root, "state");
  await Deno.mkdir(stateDir, { mode: 0o700 });
  const evil = join(root, "evil.json");
  await Deno.writeTextFile(evil, JSON.stringify({ platform_url: "https://attacker.example" }));
  return { stateDir, config: join(stateDir, "agent.json"), evil };
}

Deno.test({
  name: "agent.json is audited before it is read: symlink, group/other-writable or foreign refused",
  ignore: skipWithout(!skip),
  fn: async () => {
    await using dir = await tempDir();
    const { stateDir, config, evil } = await configFixture(dir.path);
    const resolve = () => resolveConfig({ stateDir });

    await Deno.symlink(evil, config);
    assert.match((await failure(resolve())).message, /agent\.json": it is a symbolic link/);
    await Deno.remove(config);

    await Deno.writeTextFile(config, JSON.stringify({ platform_url: "https://p.example" }));
    await Deno.chmod(config, 0o666);
    const writable = await failure(resolve());
    assert.equal(writable.exitCode, ExitCode.usage);
    assert.match(writable.message, /writable by group or others \(mode 0666\).*chmod go-w /);

    await Deno.chmod(config, 0o644);
    await Deno.chown(config, NOBODY, NOBODY);
    assert.match((await failure(resolve())).message, /agent\.json": it is owned by uid 65534/);

    await Deno.chown(config, 0, 0);
    assert.equal((await resolve()).platformUrl?.href, "https://p.example/");

    await Deno.chown(stateDir, NOBODY, NOBODY);
    assert.match((await failure(resolve())).message, /state": it is owned by uid 65534/);
  },
});

Deno.test("identity.json is re-validated on load and fails closed", async () => {
  const ca = await createDevCa();
  await using dir = await tempDir();
  const store = new IdentityStore(join(dir.path, "state"));
  const write = async (patch: Record<string, unknown>) => {
    await store.save(await makeIdentity(ca));
    const json = JSON.parse(await Deno.readTextFile(store.identityPath));
    await Deno.writeTextFile(store.identityPath, JSON.stringify({ ...json, ...patch }));
  };
  await write({ platform_url: "http://10.0.0.5:8080/" });
  const clear = await failure(store.load());
  assert.equal(clear.exitCode, ExitCode.usage);
  assert.match(
    clear.message,
    /^Refusing identity file ".*": "platform_url" is neither https:\/\/ nor http:\/\/ on loopback; re-enroll/,
  );

  await write({ ca_certificates: [], bootstrap_ca_certificates: [] });
  assert.match((await failure(store.load())).message, /both empty, so no server could be pinned/);

  for (const id of ["..", ".", ".hidden", "-rf"]) {
    await write({ agent_id: id });
    assert.match((await failure(store.load())).message, /Corrupt identity file .*"agent_id"/);
  }

  await write({
    platform_url: "http://127.0.0.1:8080/",
    ca_certificates: [],
    bootstrap_ca_certificates: [],
  });
  await store.load();
});

/** A host whose directories are `dirs` (path -> uid, mode; `link` -> a symlink to that path). */
function fakeHost(dirs: Record<string, { uid: number; mode?: number; link?: string }>) {
  const info = (path: string) => {
    const d = dirs[path];
    if (d === undefined) throw new Deno.errors.NotFound(path);
    return {
      isFile: false,
      isDirectory: d.link === undefined,
      isSymlink: d.link !== undefined,
      uid: d.uid,
      mode: d.link === undefined ? 0o40000 | d.mode! : 0o120777,
    } as Deno.FileInfo;
  };
  const realPath = (path: string): string => {
    const parent = path === "/" ? "/" : realPath(path.slice(0, path.lastIndexOf("/")) || "/");
    const full = path === "/" ? "/" : `${parent === "/" ? "" : parent}/${path.split("/").pop()}`;
    info(full);
    return dirs[full]!.link ?? full;
  };
  return {
    uid: () => 1000,
    lstat: (path: string) => Promise.resolve().then(() => info(path)),
    realPath: (path: string) => Promise.resolve().then(() => realPath(path)),
  };
}

Deno.test("metrics directory check: group- or other-writable refused unless sticky, owner us or root", async () => {
  // Fails on 32b58ff: there was no check, and root wrote into any directory it was given.
  const file = "/srv/textfile/oneconnect.prom";
  const check = (dirs: Parameters<typeof fakeHost>[0]) =>
    requireSafeMetricsDir(file, fakeHost({ "/": { uid: 0, mode: 0o755 }, ...dirs }));
  const srv = { "/srv": { uid: 0, mode: 0o755 } };
  await check({ ...srv, "/srv/textfile": { uid: 0, mode: 0o755 } });
  await check({ ...srv, "/srv/textfile": { uid: 1000, mode: 0o700 } });
  await check({ ...srv, "/srv/textfile": { uid: 0, mode: 0o1777 } }); // like /tmp
  await check({ ...srv, "/srv/textfile": { uid: 0, mode: 0o1775 } });
  for (const mode of [0o775, 0o757, 0o777, 0o770]) {
    const error = await rejectsWith(
      check({ ...srv, "/srv/textfile": { uid: 0, mode } }),
      UsageError,
    );
    assert.equal(error.exitCode, ExitCode.usage);
    assert.equal(
      error.message,
      `Refusing metrics file "${file}": the directory "/srv/textfile" above it is writable by group or others (mode 0${
        mode.toString(8)
      }), who could replace it; as its owner or root run: chmod go-w /srv/textfile`,
    );
  }
  // Sticky, but its owner can still remove our files: only us or root.
  assert.match(
    (await rejectsWith(
      check({ ...srv, "/srv/textfile": { uid: 65534, mode: 0o1777 } }),
      UsageError,
    )).message,
    /^Refusing metrics file ".*": the directory "\/srv\/textfile" above it is owned by uid 65534, who could replace it; use a metrics file under root-owned directories, or as root run: chown root \/srv\/textfile$/,
  );
  // Debian's layout: /var/lib/prometheus owned by prometheus, the textfile directory by root.
  await check({ "/srv": { uid: 108, mode: 0o755 }, "/srv/textfile": { uid: 0, mode: 0o755 } });
  // A parent others can write could swap the whole directory.
  assert.match(
    (await rejectsWith(
      check({ "/srv": { uid: 0, mode: 0o777 }, "/srv/textfile": { uid: 0, mode: 0o755 } }),
      UsageError,
    )).message,
    /the directory "\/srv" above it is writable by group or others \(mode 0777\)/,
  );
  // A symlink in the path is checked where it lives (its directory) and where it points.
  const linked = {
    "/srv": { uid: 0, mode: 0o777 },
    "/srv/textfile": { uid: 0, link: "/var/textfile" },
    "/var": { uid: 0, mode: 0o755 },
    "/var/textfile": { uid: 0, mode: 0o755 },
  };
  assert.match(
    (await rejectsWith(check(linked), UsageError)).message,
    /the directory "\/srv" above it is writable/,
  );
  await check({ ...linked, "/srv": { uid: 0, mode: 0o755 } });
  assert.match(
    (await rejectsWith(
      check({
        ...linked,
        "/srv": { uid: 0, mode: 0o755 },
        "/var/textfile": { uid: 0, mode: 0o777 },
      }),
      UsageError,
    )).message,
    /the directory "\/var\/textfile" above it is writable/,
  );
});

Deno.test({
  name: "agent.json and the token file swapped after their check are never read",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    // Fails on 32b58ff: it lstat-ed the name, then read whatever the name pointed to by then.
    await using dir = await tempDir();
    const { stateDir, config, evil } = await configFixture(dir.path);
    await Deno.chmod(evil, 0o666);
    const swaps = {
      symlink: async (name: string) => {
        await Deno.remove(name);
        await Deno.symlink(evil, name);
      },
      rename: async (name: string) => {
        await Deno.copyFile(evil, `${name}.new`);
        await Deno.rename(`${name}.new`, name);
      },
    };
    for (const [kind, swap] of Object.entries(swaps)) {
      await Deno.writeTextFile(config, JSON.stringify({ platform_url: "https://p.example" }));
      await Deno.chmod(config, 0o600);
      let swapped = false;
      // The swap lands between the agent's look at the name and its read.
      const lstat = async (path: string) => {
        const info = await Deno.lstat(path);
        if (path === config && !swapped) {
          swapped = true;
          await swap(config);
        }
        return info;
      };
      const host = {
        env: () => undefined,
        os: Deno.build.os,
        uid: () => Deno.uid(),
        readTextFile: (path: string) => Deno.readTextFile(path),
        ownership: { ...denoOwnershipHost, lstat },
      };
      const error = await failure(resolveConfig({ stateDir }, host));
      assert.ok(swapped, kind);
      assert.equal(error.exitCode, ExitCode.usage);
      assert.equal(
        error.message,
        `Refusing configuration ${
          JSON.stringify(config)
        }: it was replaced while being read; check who else writes the state directory`,
        kind,
      );
      await Deno.remove(config);
    }

    // The enrollment token file, read through the FileSystem seam the same way.
    const token = join(dir.path, "token");
    for (const [kind, swap] of Object.entries(swaps)) {
      await Deno.writeTextFile(token, "oc_et_real\n");
      let swapped = false;
      const fs = {
        ...denoFileSystem,
        lstat: async (path: string) => {
          const info = await Deno.lstat(path);
          if (path === token && !swapped) {
            swapped = true;
            await swap(token);
          }
          return info;
        },
      };
      const store = new IdentityStore(stateDir);
      const error = await failure(resolveToken(testContext(stateDir).ctx, token, store, fs));
      assert.ok(swapped, kind);
      assert.equal(
        error.message,
        `Refusing to read enrollment token file ${
          JSON.stringify(token)
        } (--token-file): it was replaced while being read; check who else can write its directory`,
      );
      await Deno.remove(token);
    }
  },
});
