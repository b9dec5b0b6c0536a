/**
 * The floor: a bare Deno process that makes one HTTPS request to the platform through a client
 * pinned to its CA, as the agent's is, and then sleeps, holding its HTTP client as an agent would
 * between two heartbeats. Run with the agent's permission flags, its RSS is what the runtime costs
 * before any agent code. It names no package, not even in a dynamic import: with a config file,
 * `deno run` resolves every specifier it can see at start-up, and a single npm specifier there
 * costs about 3 MB (the npm resolver), which would inflate the floor and flatter the ratio.
 * `floor_deps.ts` prices the dependencies on top of this same floor.
 *
 * With `post`, the POST floor: it then POSTs a heartbeat-sized JSON body (600 B) every second on
 * the same TLS connection and reads the answer (a 401: no agent code runs, and the platform's work
 * is not this process's), so its CPU per POST is what the runtime costs for one beat. When stopped
 * (SIGTERM) it prints when each POST was answered (Date.now(), a JSON array), kept in memory until
 * then so that no write adds to the CPU measured.
 *
 * Usage: deno run <agent flags> tasks/bench/floor.ts <platform-url> <ca-file> [post]
 */
const [url, caFile, mode] = Deno.args;
if (url === undefined || caFile === undefined) {
  throw new Error("Usage: floor.ts <platform-url> <ca-file> [post]");
}
const caPem = await Deno.readTextFile(caFile);
// Pinned like the agent's client (src/platform/client.ts): DENO_TLS_CA_STORE="," while the first
// client is made leaves only `caCerts`, so the floor does not hold the built-in root store that
// the agent never loads.
Deno.env.set("DENO_TLS_CA_STORE", ",");
const client = Deno.createHttpClient({ caCerts: [caPem] });
Deno.env.delete("DENO_TLS_CA_STORE");
const response = await fetch(new URL("api/v1/health", url), { client });
await response.json();
if (!response.ok) throw new Error(`health answered ${response.status}`);
if (mode === "post") {
  const target = new URL("api/v1/agents/00000000-0000-4000-8000-000000000000/heartbeat", url);
  const body = JSON.stringify({ sent_at: new Date().toISOString(), padding: "x".repeat(540) });
  const answeredAt: number[] = [];
  const timer = setInterval(async () => {
    const answer = await fetch(target, {
      client,
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer bench" },
      body,
    });
    await answer.arrayBuffer();
    answeredAt.push(Date.now());
  }, 1000);
  Deno.addSignalListener("SIGTERM", () => {
    clearInterval(timer);
    console.log(JSON.stringify(answeredAt));
    Deno.exit(0);
  });
} else {
  // Sleep until killed; the client stays referenced, like an agent's between two heartbeats.
  setInterval(() => [client], 2 ** 31 - 1);
}
