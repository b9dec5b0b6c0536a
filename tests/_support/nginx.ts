/**
 * Test harness: a real nginx terminating mutual TLS in front of the dev platform, as a production
 * edge would. nginx verifies the client certificate against the dev CA and forwards it to the
 * platform in `X-Client-Verify` / `X-Client-Cert`, marked with the shared proxy secret.
 */
import { join } from "node:path";
import { freePort, reachable } from "./helpers.ts";

/** Where Debian's nginx lives. */
export const NGINX_BIN = "/usr/sbin/nginx";

/** Whether nginx is installed (tests that need it skip loudly otherwise). */
export function nginxAvailable(): boolean {
  try {
    return Deno.statSync(NGINX_BIN).isFile;
  } catch {
    return false;
  }
}

/** Options for {@linkcode startNginxMtls}. */
export interface NginxMtlsOptions {
  /** The dev platform to proxy to (https, or http when it runs with insecureHttp). */
  upstream: URL;
  /** CA that issued the upstream's server certificate (and, by default, the client certificates). */
  caPem: string;
  /** Certificate nginx presents to clients. */
  serverCertPem: string;
  /** Key of `serverCertPem`. */
  serverKeyPem: string;
  /** Value sent upstream in `X-OneConnect-Proxy-Secret`. */
  proxySecret: string;
  /** CA that client certificates must chain to; default `caPem`. */
  clientCaPem?: string;
  /**
   * `ssl_verify_client` mode. "optional" (default) lets enrollment and health through without a
   * certificate, still rejects an unverifiable one in the handshake, and refuses every other route
   * without a verified one; "on" demands a certificate for every request, enrollment included.
   */
  verifyClient?: "on" | "optional";
  /**
   * Stock nginx: its own default HTML error pages (a missing or unverifiable client certificate
   * is nginx's "400 No required SSL certificate was sent" / "400 The SSL certificate error"
   * page), every route proxied as is (the platform judges `X-Client-Verify`), and
   * {@linkcode NginxMtls.block} answering `return 403` (nginx's "403 Forbidden" page) in front
   * of the API. Default false: this project's problem documents, as above.
   */
  stockErrorPages?: boolean;
}

/** A running nginx. */
export interface NginxMtls extends AsyncDisposable {
  /** `https://127.0.0.1:<port>/`. */
  readonly url: URL;
  /** The error log so far (for diagnosing a failing test). */
  errorLog(): Promise<string>;
  /** With `stockErrorPages`: while on, nginx answers every API call with its own HTML 403. */
  block(on: boolean): Promise<void>;
  /**
   * With `stockErrorPages`: while on, nginx answers enrollment with its own HTML 401 page
   * ("401 Authorization Required").
   */
  blockEnrollment(on: boolean): Promise<void>;
  /** Stops nginx and removes its temp dir. */
  close(): Promise<void>;
}

function problemJson(code: string, detail: string): string {
  const body = JSON.stringify({
    type: `https://oneconnect.dev/problems/${code}`,
    title: "Unauthorized",
    status: 401,
    detail,
    code,
  });
  return `'${body.replaceAll("'", "\\'")}'`;
}

/** Renders nginx.conf (and the proxy snippet it includes) for a temp prefix dir. */
export function nginxConfig(
  dir: string,
  port: number,
  opts: NginxMtlsOptions,
): { conf: string; proxy: string } {
  const upstream = new URL(opts.upstream);
  const https = upstream.protocol === "https:";
  const verify = opts.verifyClient ?? "optional";
  const proxy = `proxy_pass ${https ? "https" : "http"}://platform;
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header Host $http_host;
proxy_set_header X-Client-Verify $ssl_client_verify;
proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
proxy_set_header X-OneConnect-Proxy-Secret "${opts.proxySecret}";
${
    https
      ? `proxy_ssl_verify on;
proxy_ssl_trusted_certificate ${join(dir, "upstream_ca.crt")};
proxy_ssl_verify_depth 2;
proxy_ssl_name localhost;
proxy_ssl_server_name on;
proxy_ssl_session_reuse on;`
      : ""
  }
`;
  // `if (-f)` is evaluated per request: the 403 is switched by a file, without a reload.
  const stock = `
    location = /api/v1/agents/enroll {
      if (-f ${join(dir, "block_enrollment")}) {
        return 401;
      }
      include ${join(dir, "proxy.conf")};
    }
    location / {
      if (-f ${join(dir, "block")}) {
        return 403;
      }
      include ${join(dir, "proxy.conf")};
    }
  }
}
`;
  const conf = `daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} info;
events { worker_connections 256; }
http {
  access_log ${join(dir, "access.log")};
  client_body_temp_path ${join(dir, "client_body")};
  proxy_temp_path ${join(dir, "proxy")};
  fastcgi_temp_path ${join(dir, "fastcgi")};
  uwsgi_temp_path ${join(dir, "uwsgi")};
  scgi_temp_path ${join(dir, "scgi")};
  upstream platform {
    server ${upstream.host};
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${join(dir, "server.crt")};
    ssl_certificate_key ${join(dir, "server.key")};
    ssl_client_certificate ${join(dir, "client_ca.crt")};
    ssl_verify_client ${verify};
    ssl_verify_depth 2;
    # nginx answers an unverifiable (495) or missing (496) client certificate with an HTML 400;
    # answer a problem document instead so the agent can report the cause.
    error_page 495 = @bad_certificate;
    error_page 496 = @no_certificate;
    location @bad_certificate {
      default_type application/problem+json;
      return 401 ${
    problemJson("client_certificate_invalid", "client certificate rejected by the TLS proxy")
  };
    }
    location @no_certificate {
      default_type application/problem+json;
      return 401 ${
    problemJson("client_certificate_required", "the TLS proxy requires a client certificate")
  };
    }
    # Enrollment and health come before the agent holds a certificate.
    location = /api/v1/agents/enroll {
      include ${join(dir, "proxy.conf")};
    }
    location = /api/v1/health {
      include ${join(dir, "proxy.conf")};
    }
    location / {
      default_type application/problem+json;
      if ($ssl_client_verify != SUCCESS) {
        return 401 ${
    problemJson("client_certificate_required", "the TLS proxy requires a client certificate")
  };
      }
      include ${join(dir, "proxy.conf")};
    }
  }
}
`;
  if (opts.stockErrorPages) {
    // Same server, without this project's error pages: everything from them on is replaced.
    return { conf: conf.slice(0, conf.indexOf("    # nginx answers")) + stock, proxy };
  }
  return { conf, proxy };
}

/** What {@linkcode startNginxFor} needs of a dev platform. */
export interface FrontedPlatform {
  url: URL;
  caCertPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

/**
 * nginx in front of `platform` as its edge: presents the platform's own server certificate,
 * verifies clients against the platform's CA, and forwards with `proxySecret`; `options` override.
 */
export function startNginxFor(
  platform: FrontedPlatform,
  proxySecret: string,
  options: Partial<NginxMtlsOptions> = {},
): Promise<NginxMtls> {
  return startNginxMtls({
    upstream: platform.url,
    caPem: platform.caCertPem,
    serverCertPem: platform.serverCertPem,
    serverKeyPem: platform.serverKeyPem,
    proxySecret,
    ...options,
  });
}

/** Starts nginx with `ssl_verify_client on` in front of the dev platform. */
export async function startNginxMtls(opts: NginxMtlsOptions): Promise<NginxMtls> {
  if (!/^[A-Za-z0-9._~+\/=-]+$/.test(opts.proxySecret)) {
    throw new Error("The proxy secret must be URL-safe characters (it is written into nginx.conf)");
  }
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-nginx-" });
  const write = (name: string, text: string, mode = 0o644) =>
    Deno.writeTextFile(join(dir, name), text, { mode });
  await write("server.crt", opts.serverCertPem);
  await write("server.key", opts.serverKeyPem, 0o600);
  await write("client_ca.crt", opts.clientCaPem ?? opts.caPem);
  await write("upstream_ca.crt", opts.caPem);
  const errorLog = () => Deno.readTextFile(join(dir, "error.log")).catch(() => "");
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const { conf, proxy } = nginxConfig(dir, port, opts);
    await write("proxy.conf", proxy);
    await write("nginx.conf", conf);
    const child = new Deno.Command(NGINX_BIN, {
      args: ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const status = child.status;
    let exited = false;
    status.then(() => exited = true);
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline && !(await reachable(port))) {
      await new Promise((r) => setTimeout(r, 25));
    }
    if (!exited && (await reachable(port))) {
      // stderr is drained so the pipe cannot fill up and block nginx.
      const stderrDone = child.stderr.pipeTo(new WritableStream()).catch(() => {});
      const url = new URL(`https://127.0.0.1:${port}/`);
      let closed = false;
      const close = async () => {
        if (closed) return;
        closed = true;
        try {
          child.kill("SIGQUIT");
        } catch {
          // already gone
        }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch {
            // already gone
          }
        }, 3000);
        await status;
        clearTimeout(timer);
        await stderrDone;
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      };
      const switchFile = (name: string) => (on: boolean) =>
        on ? Deno.writeTextFile(join(dir, name), "") : Deno.remove(join(dir, name)).catch(() => {});
      return {
        url,
        errorLog,
        block: switchFile("block"),
        blockEnrollment: switchFile("block_enrollment"),
        close,
        [Symbol.asyncDispose]: close,
      };
    }
    if (!exited) child.kill("SIGKILL");
    await status;
    const stderr = new TextDecoder().decode(
      await new Response(child.stderr).arrayBuffer().catch(() => new ArrayBuffer(0)),
    );
    lastError = `${stderr.trim()} ${(await errorLog()).trim()}`.trim();
    // A port taken between probing and binding: try another one.
    if (!/Address already in use/.test(String(lastError))) break;
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  throw new Error(`Cannot start nginx: ${lastError}`);
}
