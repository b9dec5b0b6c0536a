/**
 * The `agent_logs.txt` entry: recent lines of the agent's service log where the OS keeps it (the
 * journal of the systemd unit, the launchd log file, the WinSW service log). A line is kept only
 * if it parses as one of the agent's own lines (src/log.ts text or JSON format, or the final
 * `error:` line), then it goes through the redactor, and its URLs lose user info and query. Anything else (another program's output, a
 * panic dump, a half line) is dropped and counted.
 *
 * @module
 */
import { runChild } from "../child_process.ts";
import { errorMessage } from "../errors.ts";
import { LOG_LEVELS } from "../log.ts";
import type { DiagnosticEntry, Unreadable } from "./manifest.ts";
import { safeMessage } from "./sanitize.ts";

/** Where journalctl is, as allowed in `tasks/permissions.flags` (never looked up via PATH). */
/** journalctl where Debian, Fedora and most distributions install it. */
const JOURNALCTL = "/usr/bin/journalctl";
/** journalctl on distributions that keep it in /bin (no merged /usr). */
const JOURNALCTL_BIN = "/bin/journalctl";
/** Where journalctl is looked for, in order. */
const JOURNALCTL_PATHS: readonly string[] = [JOURNALCTL, JOURNALCTL_BIN];
/** The systemd unit (packaging/systemd). */
const SYSTEMD_UNIT = "oneconnect-agent";
/** The launchd daemon's log file (packaging/launchd). */
const LAUNCHD_LOG = "/Library/Logs/OneConnect/oneconnect-agent.log";
/** Lines read at most. */
const MAX_LOG_LINES = 1000;
/** Bytes read at most from the end of a log file. */
const MAX_TAIL_BYTES = 1024 * 1024;

/** The WinSW service logs (packaging/windows: `<logpath>\<service exe name>.{err,out}.log`). */
function windowsServiceLogs(env: (name: string) => string | undefined): string[] {
  const dir = `${env("ProgramData") || "C:\\ProgramData"}\\OneConnect\\Logs`;
  return ["err", "out"].map((s) => `${dir}\\oneconnect-agent-service.${s}.log`);
}

const TEXT_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (?:DEBUG|INFO |WARN |ERROR) \S/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Whether `line` is one the agent writes: a log line (text or JSON) or its final `error:` line. */
function isAgentLogLine(line: string): boolean {
  if (TEXT_LINE.test(line) || /^error: \S/.test(line)) return true;
  if (!line.startsWith("{")) return false;
  try {
    const json = JSON.parse(line) as Record<string, unknown>;
    return json !== null && typeof json === "object" && typeof json.ts === "string" &&
      ISO.test(json.ts) && (LOG_LEVELS as readonly string[]).includes(json.level as string) &&
      typeof json.msg === "string";
  } catch {
    return false;
  }
}

/** The agent's own lines of `text`, made safe, and how many other lines were dropped. */
function keepAgentLines(text: string): { lines: string[]; dropped: number } {
  const lines: string[] = [];
  let dropped = 0;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\r$/, "");
    if (line === "") continue;
    if (isAgentLogLine(line)) lines.push(safeMessage(line));
    else dropped++;
  }
  return { lines: lines.slice(-MAX_LOG_LINES), dropped };
}

/** What the log collector reads (seams for tests). */
export interface AgentLogsHost {
  os: typeof Deno.build.os;
  env: (name: string) => string | undefined;
  journalctlPaths?: readonly string[];
  runCommand?: typeof runChild;
  readTail?: (path: string, maxBytes: number) => Promise<string>;
}

/** The last `maxBytes` of a file, from a line start. */
async function readTail(path: string, maxBytes: number): Promise<string> {
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const start = Math.max(0, size - maxBytes);
  await file.seek(start, Deno.SeekMode.Start);
  const buffer = new Uint8Array(size - start);
  let at = 0;
  while (at < buffer.length) {
    const n = await file.read(buffer.subarray(at));
    if (n === null) break;
    at += n;
  }
  const text = new TextDecoder().decode(buffer.subarray(0, at));
  return start === 0 ? text : text.slice(text.indexOf("\n") + 1);
}

type Read = { from: string; text: string; note?: string } | { unavailable: string };

async function readJournal(host: AgentLogsHost): Promise<Read> {
  const run = host.runCommand ?? runChild;
  const args = ["-u", SYSTEMD_UNIT, "-o", "cat", "-n", String(MAX_LOG_LINES), "--no-pager"];
  let lastProblem = "journalctl is not installed";
  for (const path of host.journalctlPaths ?? JOURNALCTL_PATHS) {
    try {
      const out = await run(path, args, { timeoutMs: 5_000 });
      const stderr = out.stderr.trim().split("\n")[0] ?? "";
      if (!out.success) return { unavailable: `${path} exited with ${out.code}: ${stderr}` };
      return {
        from: `${path} ${args.join(" ")}`,
        text: out.stdout,
        ...(stderr ? { note: stderr } : {}),
      };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      lastProblem = `${path}: ${errorMessage(e)}`;
    }
  }
  return { unavailable: lastProblem };
}

async function readFiles(paths: string[], host: AgentLogsHost): Promise<Read> {
  const tail = host.readTail ?? readTail;
  const texts: string[] = [];
  const problems: string[] = [];
  for (const path of paths) {
    try {
      texts.push(await tail(path, MAX_TAIL_BYTES));
    } catch (e) {
      problems.push(`${path}: ${errorMessage(e)}`);
    }
  }
  if (texts.length === 0) return { unavailable: problems.join("; ") };
  return {
    from: paths.join(", "),
    text: texts.join("\n"),
    ...(problems.length > 0 ? { note: problems.join("; ") } : {}),
  };
}

/** The `agent_logs.txt` entry (or why there is none). */
export async function agentLogsEntry(
  host: AgentLogsHost,
): Promise<{ entries: DiagnosticEntry[]; unreadable: Unreadable[] }> {
  const read = host.os === "linux"
    ? await readJournal(host)
    : host.os === "darwin"
    ? await readFiles([LAUNCHD_LOG], host)
    : host.os === "windows"
    ? await readFiles(windowsServiceLogs(host.env), host)
    : { unavailable: `no known service log on ${host.os}` };
  if ("unavailable" in read) {
    return {
      entries: [],
      unreadable: [{ what: "agent logs", reason: safeMessage(read.unavailable) }],
    };
  }
  const { lines, dropped } = keepAgentLines(read.text);
  const note = read.note === undefined ? "" : `; the log source said: ${safeMessage(read.note)}`;
  return {
    entries: [{
      name: "agent_logs.txt",
      source:
        `${read.from}: ${lines.length} agent line(s) kept, ${dropped} other line(s) dropped${note}`,
      noSecret:
        "only lines that parse as the agent's own log lines (already redacted when written), redacted again",
      content: lines.length === 0 ? "" : `${lines.join("\n")}\n`,
    }],
    unreadable: [],
  };
}
