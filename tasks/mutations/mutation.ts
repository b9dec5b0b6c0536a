/** One-line mutations for `deno task mutate` (tasks/mutate.ts); lists of them sit beside this file. */

/** A one-line regression of a promise, and the tests that must notice it. */
export interface Mutation {
  /** The promise the original line keeps, as the report names it. */
  promise: string;
  /** The mutated file, relative to the repository root. */
  file: string;
  /** Text that occurs exactly once in `file`. */
  original: string;
  /** What replaces it: a plausible slip, not a syntax error. */
  replacement: string;
  /** The test files that cover `file`, relative to the repository root. */
  tests: string[];
}
