/**
 * The project's zod: `zod/mini` (the same package's tree-shakable API) with English messages.
 * Classic zod cannot be tree-shaken and costs about +11 MB RSS in a steady `run` even bundled;
 * `zod/mini` bundled costs about +1.5 MB (see `deno task bench` and README "Footprint").
 */
import * as z from "zod/mini";
import en from "zod/v4/locales/en.js";

// zod/mini loads no locale: without this, every issue message would read "Invalid input".
z.config(en());

export { z };
