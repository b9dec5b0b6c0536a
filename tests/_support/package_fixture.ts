/**
 * Packages of the agent for lifecycle tests, and a container to install them in: the payload is
 * the launcher of tasks/package/launcher.ts (the bundled agent run by the host's deno, bound
 * read-only into the container, with the release binaries' permission flags), built by the real
 * `deno task package` code into .deb/.rpm with dpkg-deb and rpmbuild.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { packageAll } from "../../tasks/package.ts";
import { launcherScript } from "../../tasks/package/launcher.ts";
import { bundle } from "../../tasks/bundle.ts";
import type { DevPlatform, HeartbeatRecord } from "../../tasks/dev_platform/server.ts";
import { MAIN, until } from "./helpers.ts";
import { bootContainer, type Container, hostRunOk } from "./systemd_container.ts";

/** Where the test payload's parts live inside the container. */
export const TEST_DIR = "/opt/oneconnect-test";
/** The platform's CA file inside the container (outside /tmp, /var/tmp: PrivateTmp hides them). */
export const CA_IN_CONTAINER = `${TEST_DIR}/platform-ca.pem`;
/** Where the packages are copied inside the container. */
export const PKG_DIR = "/var/tmp/packages";

const ROOT = new URL("../..", import.meta.url).pathname;

let bundleDir: Promise<string> | undefined;

/** The bundled agent the launcher runs: the one the suite tests, or a fresh bundle. */
function agentBundle(): Promise<string> {
  bundleDir ??= (async () => {
    if (MAIN.endsWith("/main.js")) return dirname(MAIN);
    const dir = await Deno.makeTempDir({ prefix: "oneconnect-bundle-" });
    // The real directory: `bundle` is a symlink (tasks/bundle.ts), which `cp -a` would copy as one.
    return dirname(await bundle(join(dir, "bundle")));
  })();
  return bundleDir;
}

/** Builds the packages of `version` whose launcher carries `label`; returns their host paths. */
export async function buildTestPackages(
  dir: string,
  version: string,
  formats: Array<"deb" | "rpm">,
  label = version,
  repo?: { key: string; gnupgHome: string; outDir: string; baseUrl: string },
): Promise<string[]> {
  const launcher = join(dir, `launcher-${label}`);
  await Deno.writeTextFile(
    launcher,
    await launcherScript({ deno: `${TEST_DIR}/deno`, entry: `${TEST_DIR}/bundle/main.js`, label }),
    { mode: 0o755 },
  );
  return await packageAll({
    root: ROOT,
    version,
    distDir: join(dir, "nothing"),
    outDir: repo?.outDir ?? join(dir, `out-${label}`),
    binary: launcher,
    formats,
    repoKey: repo?.key,
    repoUrl: repo?.baseUrl,
    gnupgHome: repo?.gnupgHome,
    date: new Date(),
    print: () => {},
  });
}

/** Boots a container holding the test payload's deno and bundle and the platform's CA. */
export async function payloadContainer(caPem: string): Promise<Container> {
  const deno = await Deno.realPath(Deno.execPath());
  const box = await bootContainer({
    binds: [{ host: deno, container: `${TEST_DIR}/deno`, readOnly: true }],
  });
  try {
    await hostRunOk(["cp", "-a", await agentBundle(), join(box.root, TEST_DIR, "bundle")]);
    await box.writeFile(CA_IN_CONTAINER, caPem);
    return box;
  } catch (e) {
    await box[Symbol.asyncDispose]();
    throw e;
  }
}

/** Copies host files into the container's {@linkcode PKG_DIR}; returns their paths inside. */
export async function copyPackages(box: Container, paths: string[]): Promise<string[]> {
  const inside: string[] = [];
  for (const p of paths) {
    const name = p.slice(p.lastIndexOf("/") + 1);
    await box.writeFile(`${PKG_DIR}/${name}`, await Deno.readFile(p));
    inside.push(`${PKG_DIR}/${name}`);
  }
  return inside;
}

/** What systemd says about a unit: `systemctl show` properties. */
export async function unitState(
  box: Container,
  unit = "oneconnect-agent.service",
): Promise<Record<string, string>> {
  const out = await box.exec([
    "systemctl",
    "show",
    unit,
    "-p",
    "ActiveState,SubState,UnitFileState,MainPID,ExecMainStartTimestampMonotonic,NRestarts,Result",
  ]);
  return Object.fromEntries(
    out.stdout.trim().split("\n").filter((l) => l.includes("=")).map((l) => {
      const i = l.indexOf("=");
      return [l.slice(0, i), l.slice(i + 1)];
    }),
  );
}

/** The journal's cursor now (to read only what comes after). */
export async function journalCursor(box: Container): Promise<string> {
  const out = await box.sh("journalctl -n 0 --show-cursor --no-pager -q");
  const m = out.match(/-- cursor: (\S+)/);
  assert.ok(m, `no cursor in: ${out}`);
  return m[1]!;
}

/** The service's journal lines (message only) after `cursor`. */
export async function journalSince(box: Container, cursor: string): Promise<string[]> {
  const out = await box.sh(
    `journalctl --no-pager -q -o cat --after-cursor='${cursor}' -u oneconnect-agent.service`,
  );
  return out.split("\n").filter((l) => l !== "");
}

/** The environment of process `pid` inside the container (its own PID namespace). */
export async function processEnv(box: Container, pid: string): Promise<Record<string, string>> {
  const raw = await box.sh(`cat /proc/${pid}/environ`);
  return Object.fromEntries(
    raw.split("\0").filter((e) => e.includes("=")).map((e) => [
      e.slice(0, e.indexOf("=")),
      e.slice(e.indexOf("=") + 1),
    ]),
  );
}

/**
 * A loopback TCP forwarder to `port` that can turn into a black hole: connections are then
 * accepted and never answered (a platform that does not answer, not one that refuses).
 */
export function tcpForwarder(port: number): AsyncDisposable & {
  port: number;
  blackHole: boolean;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const state = { blackHole: false };
  const serve = (async () => {
    for await (const conn of listener) {
      open.add(conn);
      if (state.blackHole) continue;
      (async () => {
        try {
          const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
          open.add(upstream);
          await Promise.allSettled([
            conn.readable.pipeTo(upstream.writable),
            upstream.readable.pipeTo(conn.writable),
          ]);
        } catch {
          // the peer went away
        }
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get blackHole() {
      return state.blackHole;
    },
    set blackHole(v: boolean) {
      state.blackHole = v;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of open) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await serve;
    },
  };
}

/** Follows one agent's heartbeats on a dev platform across package operations. */
export interface HeartbeatWatch {
  agentId: string;
  /** The newest sequence seen by {@linkcode HeartbeatWatch.after}. */
  lastSequence: number;
  /** Waits for a heartbeat of `agentId` with a sequence above `sequence`; returns them all. */
  after(sequence: number): Promise<HeartbeatRecord[]>;
}

/** A {@linkcode HeartbeatWatch} on `platform`, for no agent yet. */
export function heartbeatWatch(platform: DevPlatform): HeartbeatWatch {
  const watch: HeartbeatWatch = {
    agentId: "",
    lastSequence: 0,
    async after(sequence) {
      await until(
        () => platform.heartbeats(watch.agentId).some((h) => h.sequence > sequence),
        `a heartbeat after sequence ${sequence}`,
        30_000,
      );
      const beats = platform.heartbeats(watch.agentId);
      watch.lastSequence = beats.at(-1)!.sequence;
      return beats;
    },
  };
  return watch;
}

/** Where the package keeps the operator's configuration. */
export const CONFIG_FILE = "/etc/oneconnect-agent/agent.json";

/**
 * Runs `upgrade` (a dpkg or rpm command) and asserts the upgrade rules: the service active and
 * enabled, started exactly once (systemd's journal), now running the launcher labelled `label`,
 * the same agent heartbeating with the sequence continuing, the operator's `config` kept.
 */
export async function assertUpgradedOnce(
  box: Container,
  watch: HeartbeatWatch,
  label: string,
  config: string,
  upgrade: () => Promise<unknown>,
): Promise<void> {
  const before = await unitState(box);
  const cursor = await journalCursor(box);
  const sequence = watch.lastSequence;
  await upgrade();
  const after = await unitState(box);
  assert.equal(after.ActiveState, "active");
  assert.equal(after.UnitFileState, "enabled");
  assert.equal((await unitState(box, "oneconnect-agent-enroll.path")).UnitFileState, "enabled");
  assert.notEqual(after.MainPID, before.MainPID);
  const lines = await journalSince(box, cursor);
  assert.equal(lines.filter((l) => /^Started /.test(l)).length, 1, lines.join("\n"));
  // The process running now is the new package's launcher.
  assert.equal((await processEnv(box, after.MainPID!)).ONECONNECT_LAUNCHER_LABEL, label);
  const beats = await watch.after(sequence);
  assert.ok(beats.every((h) => h.agent_id === watch.agentId));
  assert.equal(
    JSON.parse(await box.sh("cat /var/lib/oneconnect-agent/identity.json")).agent_id,
    watch.agentId,
  );
  assert.equal(await box.sh(`cat ${CONFIG_FILE}`), config);
}

/** Runs `reinstall` and asserts the service runs again as the same agent (one agent known). */
export async function assertResumes(
  box: Container,
  platform: DevPlatform,
  watch: HeartbeatWatch,
  reinstall: () => Promise<unknown>,
): Promise<void> {
  const sequence = watch.lastSequence;
  await reinstall();
  assert.equal((await unitState(box)).ActiveState, "active");
  const beats = await watch.after(sequence);
  assert.ok(beats.every((h) => h.agent_id === watch.agentId));
  assert.equal(platform.agents().length, 1);
}

/** Asserts a purge: the agent unenrolled at the platform, state and configuration gone, stopped. */
export async function assertPurged(
  box: Container,
  platform: DevPlatform,
  agentId: string,
): Promise<void> {
  assert.equal(platform.agents().find((a) => a.agent_id === agentId)?.deleted, true);
  for (const path of ["/var/lib/oneconnect-agent", "/etc/oneconnect-agent"]) {
    assert.equal((await box.exec(["test", "-e", path])).code, 1, `${path} left behind`);
  }
  assert.equal((await unitState(box)).ActiveState, "inactive");
}
