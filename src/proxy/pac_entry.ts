/**
 * The hidden first argument that makes the agent's executable serve as the PAC evaluator
 * (src/proxy/pac_worker.ts): a compiled binary is its own Deno and has no `deno run`.
 */
export const PAC_EVALUATOR_ARG = "__pac-evaluator";
