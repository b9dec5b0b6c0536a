/**
 * The floor: a bare Deno process that makes one HTTPS request to the platform through a client
 * pinned to its CA, as the agent's is, and then sleeps, holding its HTTP client as an agent would
 * between two heartbeats. Run with the agent's permission flags, its RSS is what the runtime costs
 * before any agent code. It names no package, not even in a dynamic import: with a config file,
 * `deno run` resolves every specifier it can see at start-up, and a single npm specifier there
 * costs about 3 MB (the npm resolver), which would inflate the floor and flatter the ratio.
 * `floor_deps.ts` prices the dependencies on top of this same floor.
 *
 * Usage: deno run <agent flags> tasks/bench/floor.ts <platform-url> <ca-file>
 */
const [url, caFile] = Deno.args;
if (url === undefined || caFile === undefined) {
  throw new Error("Usage: floor.ts <platform-url> <ca-file>");
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
// Sleep until killed; the client stays referenced, like an agent's between two heartbeats.
setInterval(() => [client], 2 ** 31 - 1);
