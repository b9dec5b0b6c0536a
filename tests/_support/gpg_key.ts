/**
 * A throwaway gpg signing key for repository tests, in its own GNUPGHOME (never the user's).
 *
 * @module
 */
import { hostRunOk } from "./systemd_container.ts";

/** A generated key: its GNUPGHOME and fingerprint. */
export interface GpgKey {
  home: string;
  fingerprint: string;
}

/** Generates an RSA 3072 signing key without passphrase in `home` (created 0700). */
export async function throwawayKey(
  home: string,
  name = "OneConnect Test Packages",
): Promise<GpgKey> {
  await Deno.mkdir(home, { recursive: true, mode: 0o700 });
  const env = { GNUPGHOME: home, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  await hostRunOk([
    "gpg",
    "--batch",
    "--passphrase",
    "",
    "--quick-gen-key",
    `${name} <packages@oneconnect.example>`,
    "rsa3072",
    "sign",
    "1d",
  ], { env });
  const listing = await hostRunOk(["gpg", "--batch", "--with-colons", "--list-secret-keys"], {
    env,
  });
  const fingerprint = listing.match(/^fpr:+([0-9A-F]{40}):/m)?.[1];
  if (!fingerprint) throw new Error(`no key in:\n${listing}`);
  return { home, fingerprint };
}
