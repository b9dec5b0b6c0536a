/**
 * The `environment.json` entry: which of the variables the agent reads are set (names only),
 * and the proxy variables without user info.
 *
 * @module
 */
import { ENV_VARS } from "../config/config.ts";
import { trustVariablesAtStartup } from "../trust/trust_store.ts";
import type { DiagnosticEntry } from "./manifest.ts";
import { safeUrl } from "./sanitize.ts";
import { withProxyScheme } from "../proxy/proxy_hop.ts";

/** Proxy variables, in both cases (curl's convention, which the agent follows). */
const PROXY_VARS = [
  "HTTPS_PROXY",
  "HTTP_PROXY",
  "NO_PROXY",
  "https_proxy",
  "http_proxy",
  "no_proxy",
] as const;

/**
 * Every variable the agent reads: `tasks/permissions.flags` allows exactly these plus the
 * service-manager ones (a test keeps the two lists equal).
 */
const AGENT_ENV_VARS: readonly string[] = [
  ...Object.values(ENV_VARS),
  "HOME",
  "XDG_STATE_HOME",
  "ProgramData",
  ...PROXY_VARS,
  "DENO_TLS_CA_STORE",
  "DENO_CERT",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "SSLKEYLOGFILE",
];

/** The `environment.json` entry. */
export function environmentEntry(
  env: (name: string) => string | undefined,
  trust = trustVariablesAtStartup(),
): DiagnosticEntry {
  // The agent cleared the root-store variables at start (and set DENO_TLS_CA_STORE itself):
  // what matters is whether they were set then.
  const set = AGENT_ENV_VARS.filter((name) =>
    trust?.all.includes(name) ? trust.names.includes(name) : env(name) !== undefined
  );
  const proxies: Record<string, string> = {};
  for (const name of PROXY_VARS) {
    const value = env(name);
    if (value === undefined) continue;
    // NO_PROXY lists hosts; the others are URLs whose user info may hold a password, read as
    // the agent reads them (so "user:pass@host" is never taken for a scheme).
    proxies[name] = /no_proxy/i.test(name)
      ? value
      : value.trim() === ""
      ? ""
      : safeUrl(withProxyScheme(value.trim()));
  }
  return {
    name: "environment.json",
    source:
      "this process's environment as it started, for the variables the agent reads (src/config/config.ts, tasks/permissions.flags)",
    noSecret:
      "variable names only; proxy URLs as scheme://host:port/path without user info, query or fragment; NO_PROXY lists host names",
    content: {
      set,
      proxy: proxies,
      ...(set.includes("SSLKEYLOGFILE")
        ? { warning: "SSLKEYLOGFILE is set: TLS session keys of this process would be logged" }
        : {}),
    },
  };
}
