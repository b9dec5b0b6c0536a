import type { ConfigHost } from "../../src/config/config.ts";
import { regularFile } from "./helpers.ts";

/** A {@linkcode ConfigHost} over an in-memory environment and in-memory `agent.json` files by path. */
export function configHost(
  env: Record<string, string> = {},
  files: Record<string, string> = {},
  os: typeof Deno.build.os = "linux",
  uid: number | null = 1000,
): ConfigHost {
  return {
    env: (name) => env[name],
    os,
    uid: () => uid,
    readConfigFile: (path) => {
      const text = files[path];
      return text === undefined
        ? Promise.reject(new Deno.errors.NotFound(path))
        : Promise.resolve({ text, info: regularFile() });
    },
  };
}
