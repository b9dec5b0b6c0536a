/**
 * The shapes a proxy decision is made of, shared by the selection and the lookups it loads lazily
 * (PAC, OS settings), so that those import no selection code.
 *
 * @module
 */

/** One way to reach the platform: directly, or through an HTTP(S) proxy (credentials allowed). */
export type ProxyHop = { kind: "direct" } | { kind: "proxy"; url: URL };

/** What the OS setting says for one target. */
export interface OsProxyDecision {
  hops: ProxyHop[];
  /** E.g. `WinHTTP (netsh winhttp show proxy)`. */
  source: string;
}
