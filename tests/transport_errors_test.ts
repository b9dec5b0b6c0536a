import assert from "node:assert/strict";
import {
  classifyTransportError,
  isConnectFailure,
  isUntrustedIssuer,
  type TransportFailure,
} from "../src/platform/transport_errors.ts";

// Recorded from Deno 2.9.6 (`errorMessage(e, true)` of what fetch or the body read threw) against
// real peers: closed ports, an unresolvable name, Deno.serve with openssl-made certificates, a
// plain HTTP port, `openssl s_server -Verify 1`, and a proxy answering CONNECT with 403.
const SENDING =
  "fetch failed error sending request for url (https://localhost:8443/): client error";
const RAW = {
  refused: `${SENDING} (Connect): tcp connect error: Connection refused (os error 111)`,
  dns:
    `${SENDING} (Connect): dns error: failed to lookup address information: Name or service not known`,
  unknownIssuer: `${SENDING} (Connect): invalid peer certificate: UnknownIssuer`,
  name:
    `${SENDING} (Connect): invalid peer certificate: certificate not valid for name "127.0.0.1"; certificate is only valid for DnsName("localhost")`,
  expired:
    `${SENDING} (Connect): invalid peer certificate: certificate expired: verification time 1796096888 (UNIX), but certificate is not valid after 1577923200 (218173688 seconds ago)`,
  notYet:
    `${SENDING} (Connect): invalid peer certificate: certificate not valid yet: verification time 1796096888 (UNIX), but certificate is not valid before 1893456000 (97359112 seconds in future)`,
  caAsLeaf: `${SENDING} (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`,
  plainPort: `${SENDING} (Connect): received corrupt message of type InvalidContentType`,
  certificateRequired: "fetch failed received fatal alert: CertificateRequired",
  handshakeFailure: `${SENDING} (Connect): received fatal alert: HandshakeFailure`,
  tunnel: `${SENDING} (Connect): unsuccessful tunnel`,
  midBody: "error reading a body from connection",
};

function classify(raw: string, overrides: Partial<TransportFailure> = {}) {
  return classifyTransportError({
    raw,
    phase: "connect",
    baseUrl: new URL("https://localhost:8443/"),
    timeoutMs: 15_000,
    pinned: true,
    mtls: false,
    ...overrides,
  });
}

const PROXY = new URL("http://proxy.example:3128");

Deno.test("transport errors: refused, DNS, tunnel and a cut body name what was dialled", () => {
  assert.deepEqual(classify(RAW.refused), {
    kind: "network",
    message: 'cannot connect to "localhost:8443": connection refused',
  });
  assert.deepEqual(classify(RAW.refused, { proxy: PROXY }), {
    kind: "network",
    message: 'cannot connect to proxy "proxy.example:3128": connection refused',
  });
  assert.deepEqual(classify(RAW.dns), {
    kind: "dns",
    message: 'cannot resolve host "localhost" (DNS lookup failed)',
  });
  assert.deepEqual(classify(RAW.dns, { proxy: PROXY }), {
    kind: "dns",
    message: 'cannot resolve proxy host "proxy.example" (DNS lookup failed)',
  });
  assert.deepEqual(classify(RAW.tunnel, { proxy: PROXY }), {
    kind: "network",
    message:
      'proxy "proxy.example:3128" refused the tunnel to "localhost:8443": it answered CONNECT with an error',
  });
  assert.deepEqual(classify(RAW.midBody, { phase: "body" }), {
    kind: "network",
    message: 'connection to "localhost:8443" closed before the answer was complete',
  });
  assert.deepEqual(classify("fetch failed connection reset by peer (os error 104)"), {
    kind: "network",
    message: 'connection to "localhost:8443" was reset',
  });
  assert.deepEqual(classify("something odd: at https://secret.example/x?y", { proxy: PROXY }), {
    kind: "network",
    message: 'request to "localhost:8443" via proxy "proxy.example:3128" failed: at <url>',
  });
});

Deno.test("transport errors: the client's own timer and the caller's abort win over the text", () => {
  assert.deepEqual(classify(RAW.refused, { cause: "timeout", timeoutMs: 2500 }), {
    kind: "timeout",
    message: 'no complete answer from "localhost:8443" within 2.5 s',
  });
  assert.deepEqual(classify(RAW.refused, { cause: "aborted" }), {
    kind: "aborted",
    message: 'request to "localhost:8443" was aborted',
  });
  assert.deepEqual(classify("fetch failed operation timed out (os error 110)"), {
    kind: "timeout",
    message: 'connecting to "localhost:8443" timed out',
  });
});

Deno.test("transport errors: rustls failures say which certificate check failed", () => {
  const tls = (raw: string, o: Partial<TransportFailure> = {}) => {
    const r = classify(raw, o);
    assert.equal(r.kind, "tls");
    return r.message.replace('TLS handshake with "localhost:8443" failed: ', "");
  };
  assert.equal(tls(RAW.unknownIssuer), "certificate is not signed by a pinned CA (UnknownIssuer)");
  assert.equal(
    tls(RAW.unknownIssuer, { pinned: false }),
    "certificate is not signed by a trusted CA (UnknownIssuer)",
  );
  assert.equal(
    tls(RAW.name),
    "certificate is not valid for this host name (NotValidForName; it is valid for localhost)",
  );
  assert.equal(tls(RAW.expired), "certificate expired at 2020-01-02T00:00:00Z (Expired)");
  assert.equal(
    tls(RAW.expired, { clockHint: "; HINT" }),
    "certificate expired at 2020-01-02T00:00:00Z (Expired); HINT",
  );
  assert.equal(
    tls(RAW.notYet),
    "certificate is not valid yet (valid from 2030-01-01T00:00:00Z); check this host's clock (NotValidYet)",
  );
  assert.equal(tls(RAW.caAsLeaf), "certificate rejected (Other(OtherError(CaUsedAsEndEntity)))");
  assert.equal(
    tls(RAW.plainPort),
    "the server does not speak TLS on this port: is it a plain-HTTP port? (received corrupt message of type InvalidContentType)",
  );
  assert.equal(
    tls(RAW.certificateRequired),
    "the server requires a client certificate; use --auth mtls (CertificateRequired)",
  );
  assert.equal(
    tls(RAW.certificateRequired, { mtls: true }),
    "the server did not accept the client certificate (CertificateRequired)",
  );
  assert.equal(
    tls(RAW.handshakeFailure),
    "the server ended the handshake; it may require a client certificate: use --auth mtls (HandshakeFailure)",
  );
  assert.equal(
    tls(RAW.handshakeFailure, { mtls: true }),
    "the server rejected the client certificate (HandshakeFailure)",
  );
});

Deno.test("transport errors: only refusals and DNS failures let the next proxy hop be tried", () => {
  const connectFailure = (raw: string, o: Partial<TransportFailure> = {}) =>
    isConnectFailure(classify(raw, o));
  assert.equal(connectFailure(RAW.refused), true);
  assert.equal(connectFailure(RAW.dns), true);
  assert.equal(connectFailure("fetch failed No route to host (os error 113)"), true);
  assert.equal(connectFailure(RAW.tunnel, { proxy: PROXY }), false);
  assert.equal(connectFailure(RAW.unknownIssuer), false);
  assert.equal(connectFailure(RAW.midBody, { phase: "body" }), false);
  assert.equal(isUntrustedIssuer(RAW.unknownIssuer), true);
  assert.equal(isUntrustedIssuer(RAW.name), false);
});
