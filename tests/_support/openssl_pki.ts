/**
 * Test harness: a three-level PKI made by the `openssl` CLI (root → issuing CA → leaves), and its
 * broken variants, so that chain handling is judged by a CA this project did not write.
 */
import { join } from "node:path";

/** Where Debian's openssl lives. */
export const OPENSSL_BIN = "/usr/bin/openssl";

/** Whether the openssl CLI is installed (tests that need it skip loudly otherwise). */
export function opensslAvailable(): boolean {
  try {
    return Deno.statSync(OPENSSL_BIN).isFile;
  } catch {
    return false;
  }
}

/** A certificate and its PKCS#8 key, both PEM. */
export interface OpensslPair {
  certPem: string;
  keyPem: string;
}

/** The CAs of {@linkcode OpensslPki} that can sign an agent certificate. */
export type OpensslIssuer = "root" | "issuing" | "notca" | "expired" | "toodeep";

/** The PKI: every CA and leaf, PEM. */
export interface OpensslPki {
  /** Directory holding the files (removed by the caller's temp dir). */
  dir: string;
  /** Path of `root.crt`, the only certificate the agent is given (`--ca-file`). */
  rootFile: string;
  root: OpensslPair;
  /** Issuing CA under the root: CA:true, pathlen:0, keyCertSign. */
  issuing: OpensslPair;
  /** TLS server leaf (localhost, 127.0.0.1) issued by `issuing`; `certPem` is leaf + issuing. */
  serverChain: OpensslPair;
  /** Issued by the root without CA:true (basicConstraints CA:FALSE), keyCertSign all the same. */
  notCa: OpensslPair;
  /** A CA under the root whose validity ended in 2021. */
  expired: OpensslPair;
  /** A CA under `issuing` (pathlen:0): issuing from it exceeds the path length. */
  tooDeep: OpensslPair;
  /**
   * Signs an agent CSR with openssl (EKU clientAuth unless `extendedKeyUsage` says otherwise);
   * validity from 2019 to 2099 unless `dates` (openssl `YYYYMMDDHHMMSSZ`) say otherwise.
   */
  signAgentCsr(
    csrPem: string,
    issuer: OpensslIssuer,
    opts?: { extendedKeyUsage?: string; dates?: { start: string; end: string } },
  ): Promise<string>;
}

/** Runs the openssl CLI with `args` in `dir`; throws with its stderr when it fails. */
export async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(OPENSSL_BIN, {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const CA_EXTENSIONS = {
  root: "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign",
  issuing:
    "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature",
  sub: "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign",
  notCa: "basicConstraints=critical,CA:false\nkeyUsage=critical,keyCertSign,digitalSignature",
  server:
    "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1",
};

/**
 * Makes the PKI in `dir` with `openssl genpkey`, `req` and `ca` (the `ca` command, because only it
 * sets arbitrary validity dates, which the expired CA needs). Keys are ECDSA P-256 PKCS#8.
 */
export async function makeOpensslPki(dir: string): Promise<OpensslPki> {
  await Deno.writeTextFile(join(dir, "index.txt"), "");
  await Deno.mkdir(join(dir, "issued"));
  await Deno.writeTextFile(
    join(dir, "ca.cnf"),
    `[ca]
default_ca = this
[this]
database = index.txt
new_certs_dir = issued
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
`,
  );
  const read = (name: string) => Deno.readTextFile(join(dir, name));
  const key = (name: string) =>
    openssl(dir, [
      "genpkey",
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-out",
      `${name}.key`,
    ]);
  /** `openssl ca`: signs `<name>.csr` with `<name>.ext` into `<name>.crt` (self-signed: null). */
  const sign = (name: string, issuer: string | null, dates: { start: string; end: string }) =>
    openssl(dir, [
      "ca",
      "-batch",
      "-config",
      "ca.cnf",
      "-notext",
      "-in",
      `${name}.csr`,
      "-out",
      `${name}.crt`,
      "-extfile",
      `${name}.ext`,
      "-extensions",
      "ext",
      "-startdate",
      dates.start,
      "-enddate",
      dates.end,
      ...(issuer === null
        ? ["-selfsign", "-keyfile", `${name}.key`]
        : ["-cert", `${issuer}.crt`, "-keyfile", `${issuer}.key`]),
    ]);
  /** Issues `<name>.crt` for a fresh key, signed by `issuer` (or self-signed). */
  const issue = async (
    name: string,
    cn: string,
    extensions: string,
    issuer: string | null,
    dates: { start: string; end: string } = { start: "20200101000000Z", end: "20991231000000Z" },
  ) => {
    await key(name);
    await openssl(dir, [
      "req",
      "-new",
      "-key",
      `${name}.key`,
      "-subj",
      `/CN=${cn}`,
      "-out",
      `${name}.csr`,
    ]);
    await Deno.writeTextFile(
      join(dir, `${name}.ext`),
      `[ext]\n${extensions}\nsubjectKeyIdentifier=hash\n${
        issuer ? "authorityKeyIdentifier=keyid\n" : ""
      }`,
    );
    await sign(name, issuer, dates);
    return { certPem: await read(`${name}.crt`), keyPem: await read(`${name}.key`) };
  };
  const root = await issue("root", "Test Root CA", CA_EXTENSIONS.root, null);
  const issuing = await issue("issuing", "Test Issuing CA", CA_EXTENSIONS.issuing, "root");
  const server = await issue("server", "localhost", CA_EXTENSIONS.server, "issuing");
  const notCa = await issue("notca", "Test Not A CA", CA_EXTENSIONS.notCa, "root");
  const expired = await issue("expired", "Test Expired CA", CA_EXTENSIONS.sub, "root", {
    start: "20200101000000Z",
    end: "20210101000000Z",
  });
  const tooDeep = await issue("toodeep", "Test Sub-Issuing CA", CA_EXTENSIONS.sub, "issuing");
  let signed = 0;
  const signAgentCsr: OpensslPki["signAgentCsr"] = async (csrPem, issuer, opts = {}) => {
    const name = `agent${++signed}`;
    await Deno.writeTextFile(join(dir, `${name}.csr`), csrPem);
    await Deno.writeTextFile(
      join(dir, `${name}.ext`),
      `[ext]\nbasicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${
        opts.extendedKeyUsage ?? "clientAuth"
      }\nauthorityKeyIdentifier=keyid\n`,
    );
    const dates = opts.dates ?? { start: "20190101000000Z", end: "20991231000000Z" };
    await sign(name, issuer, dates);
    return await read(`${name}.crt`);
  };
  return {
    signAgentCsr,
    dir,
    rootFile: join(dir, "root.crt"),
    root,
    issuing,
    serverChain: { certPem: server.certPem + issuing.certPem, keyPem: server.keyPem },
    notCa,
    expired,
    tooDeep,
  };
}

let shared: Promise<OpensslPki> | undefined;

/** One PKI per test process, made on first use and removed when the process ends. */
export function sharedOpensslPki(): Promise<OpensslPki> {
  shared ??= Deno.makeTempDir({ prefix: "oneconnect-pki-" }).then((dir) => {
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    return makeOpensslPki(dir);
  });
  return shared;
}
