import { writeAllSync } from "./file_system.ts";
import { isoTime } from "./iso_time.ts";

/** Levels in increasing severity. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];
/** Output formats: human text or one JSON object per line. */
export const LOG_FORMATS = ["text", "json"] as const;
/** A log format. */
export type LogFormat = typeof LOG_FORMATS[number];
/** Structured fields attached to one event. */
export type LogFields = Record<string, unknown>;

/** The logger every module receives as a seam. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether events at `level` are written (lets callers skip building costly fields). */
  enabled(level: LogLevel): boolean;
}

const REDACTED = "[REDACTED]";
const MIN_SECRET_LENGTH = 6;
// Values registered here are scrubbed from every log line, error message and crash trace.
const knownSecrets = new Set<string>();

/** Registers a secret value (token, key PEM) so that it is scrubbed wherever it appears. */
export function registerSecret(value: string | undefined | null): void {
  if (typeof value !== "string") return;
  const trimmed = value.trim();
  if (trimmed.length >= MIN_SECRET_LENGTH) knownSecrets.add(trimmed);
}

/** Forgets every registered secret (tests only). */
export function clearSecrets(): void {
  knownSecrets.clear();
}

// Every pattern runs in linear time: none can start in the middle of a word and scan on to its
// end from each of its characters (a 60,000-character problem detail took 30 s of CPU when a URL
// scheme or a `*token` key could start anywhere in a word).
const PATTERNS: Array<[RegExp, string]> = [
  // A PEM private key, whole or cut short.
  [
    /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
    "[REDACTED PRIVATE KEY]",
  ],
  // Authorization header values, in any casing or quoting.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=:-]+/gi, `$1 ${REDACTED}`],
  [/(["']?authorization["']?\s*[:=]\s*["']?)[^"'\s,}]+(?:\s+[^"'\s,}]+)?/gi, `$1${REDACTED}`],
  // Credentials in URLs (proxy_url may carry them): `user:password@` or a token alone, `token@`.
  // Matched from the `://` on, whatever the scheme: a scheme pattern could start in any word.
  [/:\/\/[^\s/@:]+(?::[^\s/@]*)?@/g, `://${REDACTED}@`],
  // key=value or "key": "value" where the key names a secret.
  [
    /((?:["']?)(?:(?<![a-z_])[a-z_]*token|password|passwd|secret|private_key|api_key)(?:["']?)\s*[:=]\s*["']?)([^"'\s,}&]+)/gi,
    `$1${REDACTED}`,
  ],
];

/** Longest text {@linkcode redact} looks at; the rest is cut off before redaction. */
const REDACT_MAX_CHARS = 64 * 1024;
/** What replaces the part of an over-long text that is cut off. */
const CUT_MARK = "…[truncated]";

/** Whether the UTF-16 unit `code` is white space as `\s` means it. */
function isSpace(code: number): boolean {
  if (code < 128) return code === 32 || (code >= 9 && code <= 13);
  return /\s/.test(String.fromCharCode(code));
}

/**
 * Where to cut `text` (longer than `max`) so that no secret is split with a half kept: before
 * the word that spans the cut (a URL credential, a token, a key=value) and before a registered
 * secret that spans it. A PEM key cut short is still redacted (its pattern ends at `$`).
 */
function safeCut(text: string, max: number): number {
  let cut = max;
  for (let before = -1; before !== cut;) {
    before = cut;
    for (const secret of knownSecrets) {
      const at = text.indexOf(secret, Math.max(0, cut - secret.length + 1));
      if (at >= 0 && at < cut) cut = at;
    }
    while (cut > 0 && !isSpace(text.charCodeAt(cut - 1))) cut--;
  }
  return cut;
}

/**
 * Returns `text` with every registered secret and every secret-shaped value replaced. Linear in
 * the text's length; text beyond `max` characters is cut off first (and marked).
 */
export function redact(text: string, max = REDACT_MAX_CHARS): string {
  let out = text.length > max ? text.slice(0, safeCut(text, max)) + CUT_MARK : text;
  for (const secret of knownSecrets) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  for (const [pattern, replacement] of PATTERNS) {
    out = out.replace(pattern, replacement);
  }
  return out;
}

const SECRET_FIELD = /token|authorization|password|secret|private_?key|^key$|key_pem|cookie/i;

/** Deep-copies `value` with secret-named fields masked and every string redacted. */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redact(value);
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) return redact(value.message);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_FIELD.test(k) && v !== null && v !== undefined && typeof v !== "boolean"
      ? REDACTED
      : redactValue(v, depth + 1);
  }
  return out;
}

/** sd-daemon(3) priority prefixes: journald files each line at its level (`journalctl -p`). */
const JOURNAL_PRIORITY: Record<LogLevel, string> = {
  debug: "<7>",
  info: "<6>",
  warn: "<4>",
  error: "<3>",
};

/**
 * Whether stderr is a journald stream. systemd sets `JOURNAL_STREAM` (`<device>:<inode>` of the
 * stream) only for a service whose stdout or stderr it connects to the journal. The right check,
 * comparing it with fstat(2) of stderr, is not open to us: Deno has no fstat of stderr, and
 * stat-ing `/proc/self/fd/2` or `/dev/stderr` needs --allow-all. So the heuristic: the variable is
 * well-formed and stderr is not a terminal (a shell started from the unit's `ExecStart` inherits
 * it too; there a terminal is the usual stderr). `isTerminal` is a seam for tests.
 */
export function stderrIsJournal(
  env: (name: string) => string | undefined,
  isTerminal: () => boolean = () => Deno.stderr.isTerminal(),
): boolean {
  if (!/^\d+:\d+$/.test(env("JOURNAL_STREAM")?.trim() ?? "")) return false;
  return !isTerminal();
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Prefix each line with its syslog priority (`<4>` for a warning): stderr is journald's. */
  journal?: boolean;
  /** Receives each finished line without its newline; defaults to stderr. */
  write?: (line: string) => void;
  now?: () => Date;
}

/** Writes one line to stderr synchronously, so that nothing is lost when the process exits. */
export function writeStderrLine(line: string): void {
  writeAllSync(Deno.stderr, line + "\n");
}

function formatTextValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (value instanceof Date) return isoTime(value.getTime());
  const json = JSON.stringify(value);
  return json === undefined ? String(value) : json;
}

/** Creates a logger that redacts secrets from every message and field before writing. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format ?? "text";
  const write = options.write ?? writeStderrLine;
  const now = options.now ?? (() => new Date());
  const enabled = (level: LogLevel) => LOG_LEVELS.indexOf(level) >= threshold;
  const prefix = (level: LogLevel) => options.journal ? JOURNAL_PRIORITY[level] : "";
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (!enabled(level)) return;
    const safeMsg = redact(msg).replace(/\r?\n/g, " ");
    const safeFields = fields ? redactValue(fields) as LogFields : {};
    if (format === "json") {
      write(
        prefix(level) +
          JSON.stringify({ ts: isoTime(now().getTime()), level, msg: safeMsg, ...safeFields }),
      );
      return;
    }
    let line = `${isoTime(now().getTime())} ${level.toUpperCase().padEnd(5)} ${safeMsg}`;
    for (const [k, v] of Object.entries(safeFields)) {
      if (v !== undefined) line += ` ${k}=${formatTextValue(v)}`;
    }
    write(prefix(level) + line.replace(/\r?\n/g, "\\n"));
  };
  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    enabled,
  };
}

/** A logger that drops everything (for tests that do not look at logs). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
};
