/**
 * `deno task demo`: the whole product in one command. Starts the dev platform over HTTPS on an
 * ephemeral loopback port, enrolls the real CLI with a one-time token, lets it send three
 * heartbeats, stops it with SIGTERM and prints what the platform recorded, and which inventory
 * mode the agent and the platform negotiated. The platform refuses the first two heartbeats (an
 * outage), so the first accepted one carries the `gap` (outage evidence) the platform advertised.
 * `--contract 1.0` runs the platform as a v1.0 one (no `features`: no delta, no gap).
 */
import { join } from "node:path";
import { bundle } from "./bundle.ts";
import { agentPermissionFlags } from "./permissions.ts";
import {
  CONTRACT_VERSIONS,
  type ContractVersion,
  type DevPlatform,
  startDevPlatform,
} from "./dev_platform/server.ts";

const HEARTBEATS = 3;
/** Heartbeats the platform refuses (503) before accepting any: the outage the demo shows. */
const REFUSED = 2;
const TOTAL_BUDGET_MS = 28_000;
const STOP_BUDGET_MS = 5_000;

/** A demo step that failed, with what to tell the user. */
class StepError extends Error {
  constructor(readonly step: string, message: string) {
    super(message);
  }
}

const contractArg = Deno.args[Deno.args.indexOf("--contract") + 1] ?? "1.3";
const contract = CONTRACT_VERSIONS.find((v) => v === contractArg) as ContractVersion | undefined;
if (contract === undefined || (Deno.args.length > 0 && !Deno.args.includes("--contract"))) {
  console.error(`usage: deno task demo [--contract ${CONTRACT_VERSIONS.join("|")}]`);
  Deno.exit(2);
}

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
const say = (line: string) => console.log(line);

function agentEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/",
    NO_COLOR: "1",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  return env;
}

/** Copies a child's output to our stdout line by line, prefixed, keeping the last lines. */
async function pump(stream: ReadableStream<Uint8Array>, tail: string[]): Promise<void> {
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).replace(/\r$/, "");
      buffered = buffered.slice(nl + 1);
      if (line === "") continue;
      say(`    agent │ ${line}`);
      tail.push(line);
      if (tail.length > 20) tail.shift();
    }
  }
  if (buffered.trim() !== "") {
    say(`    agent │ ${buffered}`);
    tail.push(buffered);
  }
}

interface Agent {
  child: Deno.ChildProcess;
  tail: string[];
  done: Promise<Deno.CommandStatus>;
}

/** The entry point that ships: bundled by the demo itself, into its own temp directory. */
let MAIN = "";

function spawnAgent(flags: string[], args: string[]): Agent {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...flags, MAIN, ...args],
    env: agentEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const tail: string[] = [];
  const pumps = Promise.all([pump(child.stdout, tail), pump(child.stderr, tail)]);
  const done = pumps.then(() => child.status);
  return { child, tail, done };
}

function lastLine(agent: Agent): string {
  return agent.tail.at(-1) ?? "(no output)";
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timer = new Promise<"timeout">((resolve) => id = setTimeout(() => resolve("timeout"), ms));
  return Promise.race([p, timer]).finally(() => clearTimeout(id));
}

function kill(agent: Agent | null, signal: Deno.Signal): void {
  try {
    agent?.child.kill(signal);
  } catch {
    // already exited
  }
}

const mib = (n: unknown) => typeof n === "number" ? `${(n / 1048576).toFixed(0)} MiB` : "n/a";

interface DemoBody {
  sequence?: number;
  metrics?: {
    memory?: { total_bytes?: number; available_bytes?: number } | null;
    load_average?: number[] | null;
    uptime_seconds?: number | null;
    cpu?: { idle?: number | null } | null;
    filesystems?: { age_seconds: number; mounts: [string, string, ...(number | null)[]][] };
  };
}

function describeHeartbeat(body: unknown): string {
  const b = body as DemoBody;
  const memory = b.metrics?.memory;
  const load = b.metrics?.load_average;
  const idle = b.metrics?.cpu?.idle;
  return [
    `memory ${mib(memory?.available_bytes)} available of ${mib(memory?.total_bytes)}`,
    `load ${load ? load.map((l) => l.toFixed(2)).join(" / ") : "n/a"}`,
    // The first beat of a process has no CPU interval yet.
    `cpu ${typeof idle === "number" ? `${(100 - idle).toFixed(1)}% busy` : "n/a (first beat)"}`,
    ...(b.metrics?.filesystems ? ["filesystems"] : []),
  ].join(", ");
}

/** The newest filesystem figures among the beats (df runs at most every 5 minutes). */
function describeDisks(bodies: unknown[]): string[] {
  const fs = bodies.map((b) => (b as DemoBody).metrics?.filesystems).filter((f) => f).at(-1);
  if (!fs) return ["  disk       n/a (no filesystem figures on this OS yet)"];
  return fs.mounts.map(([mount, type, total, free, avail]) => {
    // df's Use%: used over what is usable (used + available), reserved blocks aside.
    const used = typeof total === "number" && typeof free === "number" ? total - free : null;
    const share = used !== null && typeof avail === "number" && used + avail > 0
      ? `, ${Math.ceil((100 * used) / (used + avail))}% used`
      : "";
    return `  disk       ${mount} (${type}) ${mib(avail)} available of ${mib(total)}${share}`;
  });
}

async function main(): Promise<number> {
  let platform: DevPlatform | null = null;
  let runner: Agent | null = null;
  const work = await Deno.makeTempDir({ prefix: "oneconnect-demo-" });
  const deadline = setTimeout(() => {
    say(`\nDemo failed: it did not finish within ${TOTAL_BUDGET_MS / 1000} s`);
    kill(runner, "SIGKILL");
    Deno.removeSync(work, { recursive: true });
    Deno.exit(1);
  }, TOTAL_BUDGET_MS);
  try {
    say("OneConnect agent demo\n");
    const flags = await agentPermissionFlags();
    MAIN = await bundle(join(work, "bundle"));

    say(`[1/5] Starting the dev platform (contract ${contract}, HTTPS, loopback, ephemeral port)`);
    try {
      platform = await startDevPlatform({
        quiet: true,
        dataDir: join(work, "platform"),
        contractVersion: contract,
      });
    } catch (e) {
      throw new StepError("start dev platform", e instanceof Error ? e.message : String(e));
    }
    say(`      ${platform.url.href}  (dev CA: ${platform.caFile})`);

    say("[2/5] Minting a single-use enrollment token");
    const tokenFile = join(work, "enrollment.token");
    await Deno.writeTextFile(tokenFile, platform.mintEnrollmentToken({ ttlSeconds: 300 }) + "\n", {
      mode: 0o600,
    });
    const stateDir = join(work, "state");
    say(`      written to ${tokenFile} (mode 0600)`);

    const enrollArgs = [
      "--state-dir",
      stateDir,
      "enroll",
      "--url",
      platform.url.href,
      "--token-file",
      tokenFile,
      "--ca-file",
      platform.caFile,
    ];
    say(`[3/5] oneconnect-agent ${enrollArgs.join(" ")}`);
    const enroller = spawnAgent(flags, enrollArgs);
    const enrolled = await withTimeout(enroller.done, 20_000);
    if (enrolled === "timeout") {
      kill(enroller, "SIGKILL");
      throw new StepError(
        "enroll",
        `the agent did not finish enrolling within 20 s; last line: ${lastLine(enroller)}`,
      );
    }
    const [agent] = platform.agents();
    if (!enrolled.success || !agent) {
      throw new StepError(
        "enroll",
        `the agent exited with code ${enrolled.code}: ${lastLine(enroller)}`,
      );
    }
    say(`      enrolled as ${agent.agent_id}`);

    const runArgs = ["--state-dir", stateDir, "run", "--interval", "1"];
    platform.injectFault({ route: "heartbeat", status: 503, times: REFUSED });
    say(
      `[4/5] oneconnect-agent ${
        runArgs.join(" ")
      }   (the platform refuses the first ${REFUSED} with 503, then records ${HEARTBEATS})`,
    );
    runner = spawnAgent(flags, runArgs);
    let exitedEarly: Deno.CommandStatus | null = null;
    runner.done.then((s) => exitedEarly = s);
    let seen = 0;
    while (seen < HEARTBEATS) {
      if (exitedEarly) {
        throw new StepError(
          "run",
          `the agent exited with code ${
            (exitedEarly as Deno.CommandStatus).code
          } after ${seen} heartbeat(s): ${lastLine(runner)}`,
        );
      }
      if (performance.now() - started > TOTAL_BUDGET_MS - STOP_BUDGET_MS - 2_000) {
        throw new StepError(
          "run",
          `only ${seen} of ${HEARTBEATS} heartbeats arrived in time; last line: ${
            lastLine(runner)
          }`,
        );
      }
      const beats = platform.heartbeats(agent.agent_id);
      for (const hb of beats.slice(seen)) {
        // Inventory delta: only the first beat of the process carries the full host.
        const inventory = "host" in (hb.body as object) ? "with host" : "host_digest only";
        const gap = hb.gap ? `, gap: ${hb.gap.attempts} failed attempts` : "";
        say(
          `    platform │ heartbeat #${hb.sequence} received (${hb.body_bytes} bytes, ${inventory}${gap})`,
        );
      }
      seen = beats.length;
      if (seen < HEARTBEATS) await new Promise((r) => setTimeout(r, 100));
    }

    say("[5/5] Sending SIGTERM to the agent");
    const stopAt = performance.now();
    kill(runner, "SIGTERM");
    const stopped = await withTimeout(runner.done, STOP_BUDGET_MS);
    if (stopped === "timeout") {
      kill(runner, "SIGKILL");
      throw new StepError(
        "stop",
        `the agent did not exit within ${STOP_BUDGET_MS / 1000} s of SIGTERM`,
      );
    }
    runner = null;
    const stopMs = (performance.now() - stopAt).toFixed(0);
    if (!stopped.success) {
      throw new StepError("stop", `the agent exited with code ${stopped.code} on SIGTERM`);
    }
    say(`      agent exited 0 after ${stopMs} ms`);

    const record = platform.agents().find((a) => a.agent_id === agent.agent_id);
    const beats = platform.heartbeats(agent.agent_id);
    say("\nWhat the platform recorded");
    say(`  agent id   ${record?.agent_id}`);
    say(
      `  host       ${record?.hostname ?? "n/a"} (${record?.os ?? "n/a"}), machine id ${
        record?.machine_id ?? "n/a"
      }`,
    );
    say(`  heartbeats ${beats.length}, last sequence ${record?.last_sequence}`);
    for (const hb of beats) {
      say(`    #${hb.sequence}  ${hb.received_at}  ${describeHeartbeat(hb.body)}`);
    }
    // What the agent remembered of the platform's answers (status.json), and what it sent.
    const status = JSON.parse(await Deno.readTextFile(join(stateDir, "status.json")));
    const features: string[] = status.platform_features ?? [];
    const withHost = beats.filter((hb) => "host" in (hb.body as object)).length;
    say(
      `  negotiated ${
        features.includes("host_digest")
          ? "inventory delta: the platform advertised host_digest, steady heartbeats are digest-only"
          : "full inventory: the platform advertised no host_digest, every heartbeat carries host"
      } (platform features ${JSON.stringify(features)}; ${withHost} of ${beats.length} with host)`,
    );
    const gapBeat = beats.find((hb) => hb.gap !== undefined);
    const uptime = (gapBeat?.body as { metrics?: { uptime_seconds?: number | null } })?.metrics
      ?.uptime_seconds;
    if (gapBeat?.gap) {
      const { since, attempts, last_error: e } = gapBeat.gap;
      const lasted = (Date.parse(gapBeat.received_at) - Date.parse(since)) / 1000;
      say(
        `  gap        heartbeat #${gapBeat.sequence} reported the outage: since ${since} (${
          lasted.toFixed(1)
        } s), ${attempts} failed attempts, last error ${
          [e.kind, e.status, e.code].filter((v) => v !== null).join(" ")
        }; host uptime ${uptime ?? "n/a"} s ${
          typeof uptime === "number" && uptime > lasted
            ? "> the gap: the host was up but could not reach the platform"
            : "<= the gap: the host was off"
        }`,
      );
    } else {
      say(
        `  gap        none sent: the platform did not advertise "gap" (sequences 1-${REFUSED} were refused)`,
      );
    }
    for (const line of describeDisks(beats.map((hb) => hb.body))) say(line);
    const violations = platform.contractViolations;
    if (violations.length > 0) {
      for (const v of violations) say(`  contract violation: ${v}`);
      throw new StepError(
        "contract",
        `${violations.length} request(s) or response(s) broke contract v1`,
      );
    }
    say("  every request and response matched contract/openapi.yaml");
    say(`\nDemo finished in ${elapsed()}.`);
    return 0;
  } catch (e) {
    if (e instanceof StepError) {
      say(`\nDemo failed at step "${e.step}": ${e.message}`);
    } else {
      say(`\nDemo failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    return 1;
  } finally {
    if (runner) {
      kill(runner, "SIGKILL");
      await runner.done.catch(() => {});
    }
    await platform?.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
    clearTimeout(deadline);
  }
}

Deno.exit(await main());
