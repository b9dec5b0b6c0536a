/**
 * The floor: a bare Deno process that makes one HTTPS request to the platform through a client
 * pinned to its CA, as the agent's is, and then sleeps, holding its HTTP client as an agent would between two heartbeats. Run with the
 * agent's permission flags, its RSS is what the runtime costs before any agent code. The optional
 * mode also loads one kind of dependency first, to price it:
 * - `npm`: one tiny npm package (`reflect-metadata`): the cost of Deno's npm/Node compat layer;
 * - `zod`: zod, with one schema parsed;
 * - `x509`: the enrollment-only certificate libraries, with one certificate parsed.
 *
 * Usage: deno run <agent flags> tasks/bench/floor.ts <platform-url> <ca-file> [npm|zod|x509]
 */
const [url, caFile, mode] = Deno.args;
if (url === undefined || caFile === undefined) {
  throw new Error("Usage: floor.ts <platform-url> <ca-file> [npm|zod|x509]");
}
const caPem = await Deno.readTextFile(caFile);
let keep: unknown;
if (mode === "npm") {
  keep = await import("reflect-metadata");
} else if (mode === "zod") {
  const { z } = await import("zod");
  keep = z.object({ status: z.literal("ok"), time: z.iso.datetime() });
} else if (mode === "x509") {
  await import("reflect-metadata");
  const { X509Certificate } = await import("@peculiar/x509");
  keep = new X509Certificate(caPem);
} else if (mode !== undefined) {
  throw new Error(`Unknown floor mode "${mode}"`);
}
// Pinned like the agent's client (src/platform_client.ts): DENO_TLS_CA_STORE="," while the first
// client is made leaves only `caCerts`, so the floor does not hold the built-in root store that
// the agent never loads.
Deno.env.set("DENO_TLS_CA_STORE", ",");
const client = Deno.createHttpClient({ caCerts: [caPem] });
Deno.env.delete("DENO_TLS_CA_STORE");
const response = await fetch(new URL("api/v1/health", url), { client });
const body = await response.json();
if (!response.ok) throw new Error(`health answered ${response.status}`);
if (keep && typeof keep === "object" && "parse" in keep && typeof keep.parse === "function") {
  keep.parse(body);
}
// Sleep until killed; the client stays referenced, like an agent's between two heartbeats.
setInterval(() => [client, keep], 2 ** 31 - 1);
