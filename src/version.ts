import denoJson from "../deno.json" with { type: "json" };

/** The agent's version, from `deno.json` (embedded into compiled binaries). */
export const VERSION: string = denoJson.version;

/** `User-Agent` sent on every platform request. */
export const USER_AGENT = `oneconnect-agent/${VERSION} (${Deno.build.os}; ${Deno.build.arch})`;
