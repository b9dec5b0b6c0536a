/** Test fixture: certificate authorities and server certificates made by the `openssl` CLI. */

/** Whether the `openssl` CLI is installed (tests that need it are skipped visibly otherwise). */
export const HAVE_OPENSSL = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

/** A CA made by openssl: its certificate (PEM file and text) and key file. */
export interface OpensslCa {
  certFile: string;
  keyFile: string;
  certPem: string;
}

/** A server certificate (with its key) issued by an {@linkcode OpensslCa}. */
export interface OpensslServerCert {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Makes a self-signed EC CA named `commonName` in `dir` (files `<name>.pem`, `<name>.key`). */
export async function makeOpensslCa(
  dir: string,
  name: string,
  commonName: string,
): Promise<OpensslCa> {
  const keyFile = `${dir}/${name}.key`;
  const certFile = `${dir}/${name}.pem`;
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile], dir);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    keyFile,
    "-out",
    certFile,
    "-days",
    "30",
    "-subj",
    `/O=Test/CN=${commonName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  return { certFile, keyFile, certPem: await Deno.readTextFile(certFile) };
}

/** Issues a TLS server certificate for `names` (DNS names or IP addresses) from `ca`. */
export async function issueOpensslServerCert(
  dir: string,
  ca: OpensslCa,
  name: string,
  names: string[] = ["127.0.0.1", "localhost"],
): Promise<OpensslServerCert> {
  const keyFile = `${dir}/${name}.key`;
  const csrFile = `${dir}/${name}.csr`;
  const certFile = `${dir}/${name}.pem`;
  const extFile = `${dir}/${name}.ext`;
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
  await Deno.writeTextFile(
    extFile,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
  await openssl(
    ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${keyFile}.ec`],
    dir,
  );
  await openssl(["pkcs8", "-topk8", "-nocrypt", "-in", `${keyFile}.ec`, "-out", keyFile], dir);
  await openssl(["req", "-new", "-key", keyFile, "-out", csrFile, "-subj", `/CN=${names[0]}`], dir);
  await openssl([
    "x509",
    "-req",
    "-in",
    csrFile,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-CAcreateserial",
    "-out",
    certFile,
    "-days",
    "30",
    "-extfile",
    extFile,
  ], dir);
  return {
    certFile,
    keyFile,
    certPem: await Deno.readTextFile(certFile),
    keyPem: await Deno.readTextFile(keyFile),
  };
}

/** Makes an intermediate CA `name` signed by `parent` (files `<name>.pem`, `<name>.key`). */
export async function makeOpensslIntermediate(
  dir: string,
  parent: OpensslCa,
  name: string,
  commonName: string,
): Promise<OpensslCa> {
  const keyFile = `${dir}/${name}.key`;
  const certFile = `${dir}/${name}.pem`;
  const extFile = `${dir}/${name}.ext`;
  await Deno.writeTextFile(
    extFile,
    "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
  );
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile], dir);
  await openssl([
    "req",
    "-new",
    "-key",
    keyFile,
    "-out",
    `${dir}/${name}.csr`,
    "-subj",
    `/O=Test/CN=${commonName}`,
  ], dir);
  await openssl([
    "x509",
    "-req",
    "-in",
    `${dir}/${name}.csr`,
    "-CA",
    parent.certFile,
    "-CAkey",
    parent.keyFile,
    "-CAcreateserial",
    "-out",
    certFile,
    "-days",
    "30",
    "-extfile",
    extFile,
  ], dir);
  return { certFile, keyFile, certPem: await Deno.readTextFile(certFile) };
}

/** The pin of a PEM certificate as the README's openssl one-liner computes it. */
export async function opensslPin(certFile: string): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      'openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256',
      "sh",
      certFile,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const hex = /([0-9a-f]{64})\s*$/.exec(new TextDecoder().decode(out.stdout))?.[1];
  if (!hex) throw new Error("openssl printed no SHA-256");
  return `sha256:${hex}`;
}
