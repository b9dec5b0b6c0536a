/**
 * The operating system's proxy setting, read from the tools that print it: the Windows WinHTTP
 * proxy (`netsh winhttp show proxy`, what services use) and macOS's (`scutil --proxy`). Loaded
 * only on those systems, only when no agent.json, environment or PAC setting was found.
 */
import { childStdout } from "../child_process.ts";
import { matchesNoProxy } from "./no_proxy.ts";
import { type OsProxyDecision, type ProxyHop, proxyUrlOrProblem } from "./proxy_hop.ts";

/** Absolute paths (never looked up via PATH), as allowed in `tasks/permissions.flags`. */
const NETSH_PATH = "C:\\Windows\\System32\\netsh.exe";
/** See {@linkcode NETSH_PATH}. */
const SCUTIL_PATH = "/usr/sbin/scutil";

/** A proxy setting of the OS, for https targets. */
export interface OsProxySetting {
  /** The proxy for https:// targets, if one is set. */
  https?: URL;
  /** Bypass entries: host names with `*` wildcards, IPs, CIDR ranges, `<local>`. */
  bypass: string[];
  /** Plain host names (no dot) go direct (`<local>`, `ExcludeSimpleHostnames`). */
  excludeSimple: boolean;
  /** A PAC URL the OS points to (macOS automatic proxy configuration). */
  pac?: string;
}

/** Parses `netsh winhttp show proxy`; undefined for "Direct access". */
export function parseWinHttpProxy(text: string): OsProxySetting | undefined {
  // `label : value` lines, empty values kept: a position must never pass to a neighbour's text.
  const fields = text.split(/\r?\n/).map((line) => /^\s*([^:]+?)\s*:[ \t]*(.*?)\s*$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => [m![1]!.toLowerCase(), m![2]!] as const);
  let server: string | undefined;
  let bypassRaw: string | undefined;
  if (fields.some(([key]) => key.startsWith("proxy server"))) {
    server = fields.find(([key]) => key.startsWith("proxy server"))?.[1];
    bypassRaw = fields.find(([key]) => key.startsWith("bypass list"))?.[1];
  } else {
    // Localised labels: the header (`...:` with no value), then the server, then the bypass list.
    const values = fields[0]?.[1] === "" ? fields.slice(1) : fields;
    server = values[0]?.[1];
    bypassRaw = values[1]?.[1];
  }
  if (server === undefined || server === "") return undefined;
  const https = winHttpServerFor(server, "https");
  if (https === undefined) return undefined;
  // "(none)" in the system's language (`(keine)`, `(aucun)`): no host pattern is in parentheses.
  const bypass = /^\(.*\)$/.test(bypassRaw ?? "")
    ? []
    : (bypassRaw ?? "").split(/[;,\s]+/).filter((e) => e !== "");
  return {
    https,
    bypass: bypass.filter((e) => e.toLowerCase() !== "<local>"),
    excludeSimple: bypass.some((e) => e.toLowerCase() === "<local>"),
  };
}

function winHttpServerFor(list: string, scheme: "https"): URL | undefined {
  // `host:port` for every scheme, or `http=a:80;https=b:443`.
  const entries = list.split(/[;\s]+/).filter((e) => e !== "");
  const perScheme = entries.find((e) => e.toLowerCase().startsWith(`${scheme}=`));
  const plain = entries.find((e) => !e.includes("="));
  const socks = entries.find((e) => e.toLowerCase().startsWith("socks="))?.slice(6);
  const chosen = perScheme?.slice(scheme.length + 1) ?? plain ??
    (socks === undefined ? undefined : `socks5://${socks}`);
  return chosen === undefined ? undefined : proxyUrl(chosen);
}

function proxyUrl(raw: string): URL | undefined {
  const url = proxyUrlOrProblem(raw);
  return typeof url === "string" ? undefined : url;
}

/** Parses `scutil --proxy`; undefined when neither an HTTPS proxy nor a PAC is enabled. */
export function parseScutilProxy(text: string): OsProxySetting | undefined {
  const values = new Map<string, string>();
  const bypass: string[] = [];
  let inExceptions = false;
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([^:]+?)\s*:\s*(.*?)\s*$/.exec(line);
    if (inExceptions) {
      if (/^\s*}/.test(line)) inExceptions = false;
      else if (m && /^\d+$/.test(m[1]!)) bypass.push(m[2]!);
      continue;
    }
    if (!m) continue;
    if (m[1] === "ExceptionsList" && m[2]!.startsWith("<array>")) {
      inExceptions = true;
      continue;
    }
    values.set(m[1]!, m[2]!);
  }
  const pac = values.get("ProxyAutoConfigEnable") === "1"
    ? values.get("ProxyAutoConfigURLString")
    : undefined;
  const host = values.get("HTTPSEnable") === "1" ? values.get("HTTPSProxy") : undefined;
  const port = values.get("HTTPSPort");
  const socksHost = values.get("SOCKSEnable") === "1" ? values.get("SOCKSProxy") : undefined;
  const socksPort = values.get("SOCKSPort");
  // The HTTPS proxy first; a SOCKS proxy (System Settings "SOCKS Proxy") when it is the only one.
  const https = host
    ? proxyUrl(port ? `${bracket(host)}:${port}` : bracket(host))
    : socksHost
    ? proxyUrl(`socks5://${bracket(socksHost)}${socksPort ? `:${socksPort}` : ""}`)
    : undefined;
  if (https === undefined && pac === undefined) return undefined;
  return {
    https,
    bypass,
    excludeSimple: values.get("ExcludeSimpleHostnames") === "1",
    ...(pac !== undefined ? { pac } : {}),
  };
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** Whether `hostname` is exempt from the OS proxy by its bypass list. */
function bypassesOsProxy(hostname: string, setting: OsProxySetting): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (setting.excludeSimple && !host.includes(".") && !host.includes(":")) return true;
  for (const raw of setting.bypass) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry.includes("*") || entry.includes("?")) {
      const pattern = entry.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")
        .replace(/\?/g, ".");
      if (new RegExp(`^${pattern}$`).test(host)) return true;
      continue;
    }
    // macOS writes networks short: `169.254/16`.
    const cidr = /^(\d{1,3}(?:\.\d{1,3}){0,3})\/(\d{1,2})$/.exec(entry);
    const normal = cidr
      ? `${[...cidr[1]!.split("."), "0", "0", "0"].slice(0, 4).join(".")}/${cidr[2]}`
      : entry;
    if (matchesNoProxy(host, normal)) return true;
  }
  return false;
}

/** Runs a tool with a cleared environment and returns its stdout, or throws. */
export type ToolRunner = (path: string, args: string[]) => Promise<string>;

const runTool: ToolRunner = (path, args) =>
  childStdout(path, args, { timeoutMs: 5000, codeLabel: "" });

/**
 * The OS proxy decision for `target`, or undefined when the OS sets no proxy. `signal` ends the
 * evaluation of the OS's PAC (the agent stopping).
 */
export async function readOsProxy(
  os: typeof Deno.build.os,
  target: URL,
  run: ToolRunner = runTool,
  pacHops?: (pac: string, target: URL) => Promise<ProxyHop[]>,
  signal?: AbortSignal,
): Promise<OsProxyDecision | undefined> {
  let setting: OsProxySetting | undefined;
  let source: string;
  if (os === "windows") {
    setting = parseWinHttpProxy(await run(NETSH_PATH, ["winhttp", "show", "proxy"]));
    source = "the WinHTTP proxy (netsh winhttp show proxy)";
  } else if (os === "darwin") {
    setting = parseScutilProxy(await run(SCUTIL_PATH, ["--proxy"]));
    source = "the macOS proxy settings (scutil --proxy)";
  } else {
    return undefined;
  }
  if (setting === undefined) return undefined;
  if (bypassesOsProxy(target.hostname, setting)) {
    return { hops: [{ kind: "direct" }], source: `the bypass list of ${source}` };
  }
  if (setting.pac !== undefined) {
    const evaluate = pacHops ??
      (async (pac: string, t: URL) =>
        (await import("./pac.ts")).pacHops(pac, t, undefined, signal));
    return {
      hops: await evaluate(setting.pac, target),
      source: `PAC ${JSON.stringify(setting.pac)} of ${source}`,
    };
  }
  return setting.https ? { hops: [{ kind: "proxy", url: setting.https }], source } : undefined;
}
