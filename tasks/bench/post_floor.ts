/**
 * The POST floor: a bare Deno process that POSTs a heartbeat-sized JSON body (600 B) to the
 * platform every second on one TLS connection, through a client pinned like the agent's, and reads
 * the answer (a 401: no agent code runs, the platform's work is not this process's). Its CPU per
 * POST is what the runtime costs for one beat before any agent code. When stopped (SIGTERM) it
 * prints when each POST was answered (Date.now(), a JSON array), kept in memory until then so that
 * no write adds to the CPU measured.
 *
 * Usage: deno run <agent flags> tasks/bench/post_floor.ts <platform-url> <ca-file>
 */
const [url, caFile] = Deno.args;
if (url === undefined || caFile === undefined) {
  throw new Error("Usage: post_floor.ts <platform-url> <ca-file>");
}
const caPem = await Deno.readTextFile(caFile);
Deno.env.set("DENO_TLS_CA_STORE", ",");
const client = Deno.createHttpClient({ caCerts: [caPem] });
Deno.env.delete("DENO_TLS_CA_STORE");
const target = new URL("api/v1/agents/00000000-0000-4000-8000-000000000000/heartbeat", url);
const body = JSON.stringify({ sent_at: new Date().toISOString(), padding: "x".repeat(540) });
const answeredAt: number[] = [];
const post = async () => {
  const response = await fetch(target, {
    client,
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer bench" },
    body,
  });
  await response.arrayBuffer();
  answeredAt.push(Date.now());
};
await post();
const timer = setInterval(() => void post(), 1000);
Deno.addSignalListener("SIGTERM", () => {
  clearInterval(timer);
  console.log(JSON.stringify(answeredAt));
  Deno.exit(0);
});
