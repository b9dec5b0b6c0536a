/**
 * Test fixture: a real TLS-intercepting forward proxy, Debian's squid-openssl with `ssl_bump bump
 * all` and its own CA (made by openssl), on a free loopback port, with its own config, cache and
 * pid in a temp dir. Only the squid started here is ever stopped.
 */
import { OPENSSL_BIN } from "./openssl_pki.ts";

/** Where Debian's squid-openssl installs squid and its certificate generator. */
export const SQUID = "/usr/sbin/squid";
const CERTGEN = "/usr/lib/squid/security_file_certgen";

/** Whether squid with ssl-bump support is installed (tests skip visibly otherwise). */
export const HAVE_SQUID_BUMP = await Promise.all([Deno.stat(SQUID), Deno.stat(CERTGEN)])
  .then(() => true, () => false);

/** A running bumping squid. */
export interface BumpingSquid extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** PEM of the CA squid signs its forged server certificates with. */
  caPem: string;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
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
  const ca = { certFile: `${dir}/squid-ca.pem`, keyFile: `${dir}/squid-ca.key` };
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
  const sslDb = `${dir}/ssl_db`;
  await run(CERTGEN, ["-c", "-s", sslDb, "-M", "4MB"]);
  const port = freePort();
  const config = `${dir}/squid.conf`;
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
  const child = new Deno.Command(SQUID, {
    args: ["-N", "-f", config],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let ended = false;
  const exited = child.output().finally(() => ended = true);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (ended) {
      const out = await exited;
      const log = await Deno.readTextFile(`${dir}/cache.log`).catch(() => "");
      throw new Error(
        `squid exited: ${new TextDecoder().decode(out.stderr)} ${
          log.split("\n").slice(-5).join(" ")
        }`,
      );
    }
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (Date.now() > deadline) {
        if (!ended) child.kill("SIGKILL");
        const out = await exited;
        throw new Error(`squid did not listen: ${new TextDecoder().decode(out.stderr)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url: `http://127.0.0.1:${port}`,
    caPem: await Deno.readTextFile(ca.certFile),
    async [Symbol.asyncDispose]() {
      if (!ended) child.kill("SIGKILL");
      await exited.catch(() => {});
    },
  };
}
