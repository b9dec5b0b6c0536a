/**
 * The project's zod: `zod/mini` (the same package's tree-shakable API) with English messages.
 * Classic zod cannot be tree-shaken and costs several times what bundled `zod/mini` costs in a
 * steady `run` (docs/footprint.md has the figures).
 * Import it as `import * as z from "./zod.ts"` and only access members (`z.object`): a namespace
 * used as a value would keep all of zod, its locales included, in the bundle.
 */
import { config } from "zod/mini";
import en from "zod/v4/locales/en.js";

// zod/mini loads no locale: without this, every issue message would read "Invalid input".
config(en());

export * from "zod/mini";
