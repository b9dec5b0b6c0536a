/**
 * `NO_PROXY` matching (names, domain suffixes, IP addresses and CIDR ranges), shared by the
 * environment's list and the OS bypass lists.
 *
 * @module
 */
import { inNetwork, parseIp } from "./ip_address.ts";

/** Whether `hostname` (as in `URL.hostname`) is excluded from proxying by a `NO_PROXY` list. */
export function matchesNoProxy(hostname: string, noProxy: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
  const hostIp = parseIp(host);
  for (const rawEntry of noProxy.split(",")) {
    const entry = rawEntry.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
    if (entry === "") continue;
    if (entry === "*") return true;
    if (hostIp) {
      if (inNetwork(hostIp, entry)) return true;
      continue;
    }
    const domain = entry.replace(/^\*?\./, "");
    if (host === domain || host.endsWith(`.${domain}`)) return true;
  }
  return false;
}
