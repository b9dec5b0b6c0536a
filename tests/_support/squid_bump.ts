/**
 * Test fixture: a real TLS-intercepting forward proxy, Debian's squid-openssl with `ssl_bump bump
 * all` and its own CA (made by openssl), on a free loopback port, with its own config, cache and
 * pid in a temp dir. Only the squid started here is ever stopped.
 */
import { freePort } from "./helpers.ts";
import { join } from "node:path";
import { OPENSSL_BIN } from "./openssl_pki.ts";
import { launchSquid, SQUID_PATH } from "./squid.ts";

/** Where Debian's squid-openssl installs its certificate generator. */
const CERTGEN = "/usr/lib/squid/security_file_certgen";

/** Whether squid with ssl-bump support is installed (tests skip visibly otherwise). */
export const HAVE_SQUID_BUMP = await Promise.all([Deno.stat(SQUID_PATH), Deno.stat(CERTGEN)])
  .then(() => true, () => false);

/** A running bumping squid. */
export interface BumpingSquid extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** PEM of the CA squid signs its forged server certificates with. */
  caPem: string;
}

async function run(command: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(out.stderr).slice(0, 500)}`);
  }
}

/**
 * Starts squid bumping every CONNECT with a CA named `caName`; stop it by disposing. `dir` is
 * given to squid's user: keep the agent's state directory out of it.
 */
export async function startBumpingSquid(dir: string, caName: string): Promise<BumpingSquid> {
  const ca = { certFile: join(dir, "squid-ca.pem"), keyFile: join(dir, "squid-ca.key") };
  await run(OPENSSL_BIN, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    ca.keyFile,
    "-out",
    ca.certFile,
    "-days",
    "30",
    "-subj",
    `/O=Test/CN=${caName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const sslDb = join(dir, "ssl_db");
  await run(CERTGEN, ["-c", "-s", sslDb, "-M", "4MB"]);
  const port = freePort();
  const config = join(dir, "squid.conf");
  await Deno.writeTextFile(
    config,
    [
      `http_port 127.0.0.1:${port} ssl-bump tls-cert=${ca.certFile} tls-key=${ca.keyFile} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB`,
      `sslcrtd_program ${CERTGEN} -s ${sslDb} -M 4MB`,
      "sslcrtd_children 2 startup=1 idle=1",
      "acl step1 at_step SslBump1",
      "ssl_bump peek step1",
      "ssl_bump bump all",
      // The upstream platform's certificate comes from a dev CA squid does not know.
      "tls_outgoing_options flags=DONT_VERIFY_PEER",
      "sslproxy_cert_error allow all",
      "http_access allow localhost",
      "http_access deny all",
      "cache deny all",
      `pid_filename ${dir}/squid.pid`,
      `cache_log ${dir}/cache.log`,
      `access_log ${dir}/access.log`,
      `coredump_dir ${dir}`,
      "shutdown_lifetime 0 seconds",
      "",
    ].join("\n"),
  );
  // Started as root, squid works as its cache_effective_user ("proxy" on Debian).
  if (Deno.uid() === 0) await run("chown", ["-R", "proxy:proxy", dir]);
  const squid = await launchSquid(dir, [port]);
  return {
    url: `http://127.0.0.1:${port}`,
    caPem: await Deno.readTextFile(ca.certFile),
    [Symbol.asyncDispose]: () => squid.stop(),
  };
}
