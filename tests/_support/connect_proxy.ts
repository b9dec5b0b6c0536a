/**
 * A small HTTP CONNECT proxy for tests: it tunnels to loopback targets only, counts the tunnels it
 * opened and records the `Proxy-Authorization` header it received, so tests can prove that the
 * agent went (or did not go) through a proxy.
 */

/** One CONNECT request the proxy accepted or refused. */
export interface ProxyTunnel {
  /** `host:port` from the CONNECT request line. */
  target: string;
  /** The `Proxy-Authorization` header value, or null. */
  proxyAuthorization: string | null;
  /** The status the proxy answered (200 when the tunnel was opened). */
  status: number;
}

/** Options for {@linkcode startConnectProxy}. */
export interface ConnectProxyOptions {
  /** When set, CONNECT requests without these Basic credentials get 407. */
  credentials?: { username: string; password: string };
}

/** A running CONNECT proxy; dispose it to close the listener and every tunnel. */
export interface ConnectProxy extends AsyncDisposable {
  /** `http://127.0.0.1:<port>/`. */
  readonly url: URL;
  /** Every CONNECT request seen, in order. */
  readonly requests: readonly ProxyTunnel[];
  /** How many tunnels were opened (CONNECT answered 200). */
  readonly tunnels: number;
  /** Closes the listener and every open tunnel. */
  close(): Promise<void>;
}

const MAX_HEADER_BYTES = 16 * 1024;
const LOOPBACK_TARGET = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]):\d{1,5}$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Starts a CONNECT proxy on an ephemeral loopback port. */
export function startConnectProxy(options: ConnectProxyOptions = {}): ConnectProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: ProxyTunnel[] = [];
  const open = new Set<Deno.Conn>();
  const handlers = new Set<Promise<void>>();
  const expectedAuth = options.credentials
    ? `Basic ${btoa(`${options.credentials.username}:${options.credentials.password}`)}`
    : undefined;

  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed by the other direction
    }
  };

  const handle = async (client: Deno.Conn) => {
    open.add(client);
    let upstream: Deno.Conn | undefined;
    try {
      const head = await readHead(client);
      if (!head) return;
      const [requestLine = "", ...headerLines] = decoder.decode(head.header).split("\r\n");
      const [method, target = ""] = requestLine.split(" ");
      const proxyAuthorization = headerLines
        .find((line) => line.toLowerCase().startsWith("proxy-authorization:"))
        ?.slice("proxy-authorization:".length).trim() ?? null;
      const refuse = async (status: number, reason: string, extra = "") => {
        requests.push({ target, proxyAuthorization, status });
        await client.write(
          encoder.encode(`HTTP/1.1 ${status} ${reason}\r\n${extra}Content-Length: 0\r\n\r\n`),
        );
      };
      if (method !== "CONNECT") return await refuse(405, "Method Not Allowed");
      if (expectedAuth !== undefined && proxyAuthorization !== expectedAuth) {
        return await refuse(407, "Proxy Authentication Required", "Proxy-Authenticate: Basic\r\n");
      }
      // Tests must never reach beyond loopback, whatever the client asks for.
      if (!LOOPBACK_TARGET.test(target)) return await refuse(403, "Forbidden");
      const colon = target.lastIndexOf(":");
      const hostname = target.slice(0, colon).replace(/^\[|\]$/g, "");
      try {
        upstream = await Deno.connect({ hostname, port: Number(target.slice(colon + 1)) });
      } catch {
        return await refuse(502, "Bad Gateway");
      }
      open.add(upstream);
      requests.push({ target, proxyAuthorization, status: 200 });
      await client.write(encoder.encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
      if (head.rest.length > 0) await upstream.write(head.rest);
      const up = upstream;
      await Promise.all([pump(client, up), pump(up, client)]);
    } catch {
      // A test closing its side abruptly is normal; the tunnel just ends.
    } finally {
      closeQuietly(client);
      if (upstream) closeQuietly(upstream);
    }
  };

  const acceptLoop = (async () => {
    try {
      for await (const conn of listener) {
        const p = handle(conn);
        handlers.add(p);
        p.finally(() => handlers.delete(p));
      }
    } catch {
      // listener closed
    }
  })();

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
    for (const conn of [...open]) closeQuietly(conn);
    await acceptLoop;
    await Promise.allSettled([...handlers]);
  };

  const addr = listener.addr as Deno.NetAddr;
  return {
    url: new URL(`http://127.0.0.1:${addr.port}/`),
    requests,
    get tunnels() {
      return requests.filter((r) => r.status === 200).length;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function readHead(
  conn: Deno.Conn,
): Promise<{ header: Uint8Array; rest: Uint8Array } | undefined> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (buf.length < MAX_HEADER_BYTES) {
    const n = await conn.read(chunk);
    if (n === null) return undefined;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    const end = indexOfHeaderEnd(buf);
    if (end >= 0) return { header: buf.subarray(0, end), rest: buf.subarray(end + 4) };
  }
  return undefined;
}

function indexOfHeaderEnd(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const chunk = new Uint8Array(16 * 1024);
  try {
    while (true) {
      const n = await from.read(chunk);
      if (n === null) break;
      let written = 0;
      while (written < n) written += await to.write(chunk.subarray(written, n));
    }
  } catch {
    // either side went away
  } finally {
    try {
      await to.closeWrite();
    } catch {
      // already closed
    }
  }
}
