/**
 * The floor (`floor.ts`) with one kind of dependency loaded first, from source through Deno's npm
 * layer, to price it:
 * - `npm`: one tiny npm package (`reflect-metadata`): the cost of Deno's npm/Node compat layer;
 * - `zod`: classic zod, with one schema parsed (the agent bundles `zod/mini` instead);
 * - `x509`: the enrollment-only certificate libraries, with one certificate parsed.
 *
 * Usage: deno run <agent flags> tasks/bench/floor_deps.ts <platform-url> <ca-file> npm|zod|x509
 */
const [, caFile, mode] = Deno.args;
if (caFile === undefined) throw new Error("Usage: floor_deps.ts <url> <ca-file> npm|zod|x509");
const keep: unknown[] = [];
if (mode === "npm") {
  keep.push(await import("reflect-metadata"));
} else if (mode === "zod") {
  const { z } = await import("zod");
  const schema = z.object({ status: z.literal("ok"), time: z.iso.datetime() });
  keep.push(schema, schema.parse({ status: "ok", time: new Date().toISOString() }));
} else if (mode === "x509") {
  await import("reflect-metadata");
  const { X509Certificate } = await import("@peculiar/x509");
  keep.push(new X509Certificate(await Deno.readTextFile(caFile)));
} else {
  throw new Error(`Unknown floor mode "${mode}"`);
}
await import("./floor.ts");
setInterval(() => keep, 2 ** 31 - 1);
