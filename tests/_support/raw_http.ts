/**
 * A raw TCP server on 127.0.0.1 that answers every connection with a script of bytes and pauses:
 * what no HTTP library sends (negative chunk sizes, a body that never ends, one byte a second).
 */

/** One step of a {@linkcode rawHttpServer} answer: bytes to send, a pause, or closing. */
export type RawStep = string | { pauseMs: number } | "close";

/** A running raw server; disposing it closes the listener and every connection. */
export interface RawHttpServer extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  /** Connections accepted so far. */
  connections(): number;
}

/**
 * Serves `steps` on every connection after reading the request head. Without a final "close"
 * the connection is held open (a server that stalls) until the server is disposed.
 */
export function rawHttpServer(steps: RawStep[]): RawHttpServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const open = new Set<Deno.Conn>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let accepted = 0;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const id = setTimeout(() => (timers.delete(id), resolve()), ms);
      timers.add(id);
    });
  const serve = async (conn: Deno.Conn) => {
    const head = new Uint8Array(16 * 1024);
    let seen = "";
    while (!seen.includes("\r\n\r\n")) {
      const n = await conn.read(head);
      if (n === null) return;
      seen += new TextDecoder().decode(head.subarray(0, n));
    }
    for (const step of steps) {
      if (step === "close") {
        open.delete(conn);
        conn.close();
        return;
      }
      if (typeof step === "string") {
        const bytes = new TextEncoder().encode(step);
        for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      } else {
        await pause(step.pauseMs);
      }
    }
  };
  const loop = (async () => {
    for await (const conn of listener) {
      accepted++;
      open.add(conn);
      serve(conn).catch(() => {});
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    connections: () => accepted,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const id of timers) clearTimeout(id);
      for (const conn of open) {
        try {
          conn.close();
        } catch {
          // closed by the client
        }
      }
      await loop;
    },
  };
}
