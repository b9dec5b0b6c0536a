import { readCertificatePins } from "../trust/ca_pin.ts";

/** `oneconnect-agent ca-pin <pem-file>`: one line per certificate, `sha256:<hex>  <subject>`. */
export async function caPinCommand(
  path: string,
  stdout: (text: string) => void,
): Promise<void> {
  for (const cert of await readCertificatePins(path)) {
    stdout(`${cert.pin}  ${cert.subject}\n`);
  }
}
