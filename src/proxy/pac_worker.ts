/**
 * Evaluates a PAC script's `FindProxyForURL(url, host)` in a child process of the agent's own
 * executable (src/proxy/pac.ts starts it): no permission, a heap limit, its output a pipe only the
 * agent reads, killed once the answer is in. One JSON request per line on stdin, one JSON answer
 * per line on stdout. DNS answers come from the parent in the request (the PAC function is
 * synchronous); a name the script asks for that the parent did not resolve is reported back, and
 * the parent resolves it and asks again. Self-contained on purpose: `deno run` starts it (through
 * pac_evaluator.ts) with no config and nothing to import.
 */

/** What the parent sends. */
export interface PacRequest {
  script: string;
  url: string;
  host: string;
  /** Resolved names: an IPv4 address, or null when the name does not resolve. */
  dns: Record<string, string | null>;
  myIp: string;
  nowMs: number;
}

/** What the worker answers. */
export type PacAnswer =
  | { ok: true; result: string; unresolved: string[] }
  | { ok: false; error: string; unresolved: string[] };

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/** The PAC helper functions of Netscape's specification, bound to one request's DNS answers. */
export function pacHelpers(request: PacRequest, unresolved: Set<string>) {
  const isIpv4 = (text: string) =>
    /^\d{1,3}(\.\d{1,3}){3}$/.test(text) && text.split(".").every((p) => Number(p) <= 255);
  const dnsResolve = (host: string): string | null => {
    const name = String(host).toLowerCase();
    if (isIpv4(name)) return name;
    if (Object.hasOwn(request.dns, name)) return request.dns[name] ?? null;
    unresolved.add(name);
    return null;
  };
  const convert_addr = (ipchars: string): number => {
    const bytes = String(ipchars).split(".").map(Number);
    return (((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0);
  };
  const now = () => new Date(request.nowMs);
  const isGmt = (args: unknown[]) => args.at(-1) === "GMT";
  const parts = (d: Date, gmt: boolean) =>
    gmt
      ? {
        day: d.getUTCDate(),
        month: d.getUTCMonth(),
        year: d.getUTCFullYear(),
        weekday: d.getUTCDay(),
        hour: d.getUTCHours(),
        minute: d.getUTCMinutes(),
        second: d.getUTCSeconds(),
      }
      : {
        day: d.getDate(),
        month: d.getMonth(),
        year: d.getFullYear(),
        weekday: d.getDay(),
        hour: d.getHours(),
        minute: d.getMinutes(),
        second: d.getSeconds(),
      };
  const inRange = (value: number, from: number, to: number) =>
    from <= to ? value >= from && value <= to : value >= from || value <= to;

  return {
    isPlainHostName: (host: string) => !String(host).includes("."),
    dnsDomainIs: (host: string, domain: string) =>
      String(host).toLowerCase().endsWith(String(domain).toLowerCase()),
    localHostOrDomainIs: (host: string, hostdom: string) => {
      const h = String(host).toLowerCase();
      const d = String(hostdom).toLowerCase();
      return h === d || (!h.includes(".") && d.startsWith(`${h}.`));
    },
    isResolvable: (host: string) => dnsResolve(host) !== null,
    isInNet: (ipaddr: string, pattern: string, maskstr: string) => {
      const ip = dnsResolve(ipaddr);
      if (ip === null || !isIpv4(String(pattern)) || !isIpv4(String(maskstr))) return false;
      const mask = convert_addr(maskstr);
      return ((convert_addr(ip) & mask) >>> 0) === ((convert_addr(pattern) & mask) >>> 0);
    },
    dnsResolve,
    myIpAddress: () => request.myIp,
    dnsDomainLevels: (host: string) => String(host).split(".").length - 1,
    shExpMatch: (str: string, shexp: string) => {
      const source = String(shexp).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")
        .replace(/\?/g, ".");
      return new RegExp(`^${source}$`).test(String(str));
    },
    weekdayRange: (...args: unknown[]) => {
      const gmt = isGmt(args);
      const names = (gmt ? args.slice(0, -1) : args).map((a) => DAYS.indexOf(String(a)));
      const from = names[0] ?? -1;
      const to = names[1] ?? from;
      if (from < 0 || to < 0) return false;
      return inRange(parts(now(), gmt).weekday, from, to);
    },
    dateRange: (...args: unknown[]) => {
      const gmt = isGmt(args);
      const list = gmt ? args.slice(0, -1) : args;
      const t = parts(now(), gmt);
      // Each argument is a day (1..31), a month name or a year (4 digits); one or two dates.
      type Date3 = { day?: number; month?: number; year?: number };
      const read = (items: unknown[]): Date3 => {
        const out: Date3 = {};
        for (const item of items) {
          const month = MONTHS.indexOf(String(item));
          if (month >= 0) out.month = month;
          else if (typeof item === "number" && item > 31) out.year = item;
          else if (typeof item === "number") out.day = item;
        }
        return out;
      };
      const half = list.length === 1 ? 1 : Math.ceil(list.length / 2);
      const a = read(list.slice(0, half));
      const b = list.length === 1 ? a : read(list.slice(half));
      const key = (d: Date3, day: number, month: number, year: number) =>
        ((d.year ?? year) * 12 + (d.month ?? month)) * 32 + (d.day ?? day);
      const current = key({}, t.day, t.month, t.year);
      const start = key(a, a.day ?? 1, a.month ?? t.month, t.year);
      const end = key(b, b.day ?? 31, b.month ?? t.month, t.year);
      if (a.year === undefined && b.year === undefined) return inRange(current, start, end);
      return current >= start && current <= end;
    },
    timeRange: (...args: unknown[]) => {
      const gmt = isGmt(args);
      const n = (gmt ? args.slice(0, -1) : args).map(Number);
      const t = parts(now(), gmt);
      const seconds = t.hour * 3600 + t.minute * 60 + t.second;
      if (n.length === 1) return t.hour === n[0];
      // timeRange(9, 17) covers 9:00:00 to 16:59:59.
      if (n.length === 2) return inRange(t.hour, n[0]!, (n[1]! + 23) % 24);
      if (n.length === 4) {
        return inRange(seconds, n[0]! * 3600 + n[1]! * 60, n[2]! * 3600 + n[3]! * 60 + 59);
      }
      if (n.length === 6) {
        return inRange(
          seconds,
          n[0]! * 3600 + n[1]! * 60 + n[2]!,
          n[3]! * 3600 + n[4]! * 60 + n[5]!,
        );
      }
      return false;
    },
    convert_addr,
  };
}

/** Runs `FindProxyForURL` of `request.script` with the helpers in scope. */
export function runPac(request: PacRequest): PacAnswer {
  const unresolved = new Set<string>();
  try {
    const helpers = pacHelpers(request, unresolved);
    const names = Object.keys(helpers);
    const factory = new Function(
      ...names,
      `${request.script}\n;return typeof FindProxyForURL === "function" ? FindProxyForURL : undefined;`,
    );
    const find = factory(...Object.values(helpers));
    if (typeof find !== "function") {
      return { ok: false, error: "the script defines no FindProxyForURL function", unresolved: [] };
    }
    const result = find(request.url, request.host);
    return { ok: true, result: result == null ? "" : String(result), unresolved: [...unresolved] };
  } catch (e) {
    const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { ok: false, error: message.slice(0, PAC_ERROR_CHARS), unresolved: [...unresolved] };
  }
}

/** Longest error text an answer carries. */
export const PAC_ERROR_CHARS = 200;

/**
 * Serves requests from stdin until it ends. Every permission is dropped first (a compiled agent
 * starts this with its own), and the console is silenced: nothing the script prints is an answer.
 */
export async function serveEvaluator(): Promise<void> {
  const names = ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const;
  for (const name of names) {
    try {
      Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
    } catch {
      // A permission this Deno does not know.
    }
  }
  const silent = () => {};
  for (const key of Object.keys(console)) {
    (console as unknown as Record<string, unknown>)[key] = silent;
  }
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      const bytes = encoder.encode(JSON.stringify(runPac(JSON.parse(line))) + "\n");
      for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
    }
  }
}
