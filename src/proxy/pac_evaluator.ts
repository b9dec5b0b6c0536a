/**
 * The PAC evaluator process of `deno run` (src/proxy/pac.ts starts this file alone, with no
 * permission flag): serves requests on stdin until it ends. A compiled agent serves them from
 * src/main.ts instead.
 */
import { serveEvaluator } from "./pac_worker.ts";

await serveEvaluator();
