import assert from "node:assert/strict";
import { parseScutilProxy, parseWinHttpProxy, readOsProxy } from "../src/proxy/os_proxy.ts";

// Outputs in the exact shape the tools print (Windows 10/11 netsh, macOS 13-15 scutil), as
// recorded in public bug reports and tool tests; values changed to documentation names.
const NETSH_DIRECT =
  "\r\nCurrent WinHTTP proxy settings:\r\n\r\n    Direct access (no proxy server).\r\n\r\n";
const NETSH_PROXY = "\r\nCurrent WinHTTP proxy settings:\r\n\r\n" +
  "    Proxy Server(s) :  proxy.corp.example:8080\r\n" +
  "    Bypass List     :  *.corp.example;10.*;<local>\r\n\r\n";
const NETSH_PER_SCHEME = "\nCurrent WinHTTP proxy settings:\n\n" +
  "    Proxy Server(s) :  http=web.corp.example:80;https=secure.corp.example:8443\n" +
  "    Bypass List     :  (none)\n\n";
const NETSH_URL_FORM = "    Current WinHTTP proxy settings:\n\n" +
  "        Proxy Server(s) : http://192.168.0.117:8080\n        Bypass List : <local>\n";
const NETSH_GERMAN = "\r\nAktuelle WinHTTP-Proxyeinstellungen:\r\n\r\n" +
  "    Proxyserver :  proxy.corp.example:3128\r\n" +
  "    Umgehungsliste :  *.intern.example\r\n";
const SCUTIL_PROXY = `<dictionary> {
  ExceptionsList : <array> {
    0 : *.local
    1 : 169.254/16
    2 : intranet.corp.example
  }
  ExcludeSimpleHostnames : 1
  FTPPassive : 1
  HTTPEnable : 1
  HTTPPort : 3128
  HTTPProxy : proxy.corp.example
  HTTPSEnable : 1
  HTTPSPort : 3129
  HTTPSProxy : proxy.corp.example
}
`;
const SCUTIL_PAC = `<dictionary> {
  ExceptionsList : <array> {
    0 : *.local
    1 : 169.254/16
  }
  FTPPassive : 1
  HTTPEnable : 0
  HTTPSEnable : 0
  ProxyAutoConfigEnable : 1
  ProxyAutoConfigURLString : http://wpad.corp.example/proxy.pac
}
`;
const SCUTIL_NONE = `<dictionary> {
  ExceptionsList : <array> {
    0 : *.local
    1 : 169.254/16
  }
  FTPPassive : 1
  HTTPEnable : 0
  HTTPSEnable : 0
}
`;

Deno.test("parseWinHttpProxy reads netsh output: direct, one proxy, per scheme, localised", () => {
  assert.equal(parseWinHttpProxy(NETSH_DIRECT), undefined);
  const one = parseWinHttpProxy(NETSH_PROXY)!;
  assert.equal(one.https?.href, "http://proxy.corp.example:8080/");
  assert.deepEqual(one.bypass, ["*.corp.example", "10.*"]);
  assert.equal(one.excludeSimple, true);
  const split = parseWinHttpProxy(NETSH_PER_SCHEME)!;
  assert.equal(split.https?.href, "http://secure.corp.example:8443/");
  assert.deepEqual(split.bypass, []);
  assert.equal(parseWinHttpProxy(NETSH_URL_FORM)!.https?.href, "http://192.168.0.117:8080/");
  const german = parseWinHttpProxy(NETSH_GERMAN)!;
  assert.equal(german.https?.href, "http://proxy.corp.example:3128/");
  assert.deepEqual(german.bypass, ["*.intern.example"]);
});

Deno.test("parseWinHttpProxy: an empty server or a localised (none) is never a neighbour's text", () => {
  // An English output whose server value is empty: the bypass list must not become the proxy.
  assert.equal(
    parseWinHttpProxy(
      "\r\nCurrent WinHTTP proxy settings:\r\n\r\n    Proxy Server(s) :  \r\n" +
        "    Bypass List     :  *.corp.example;10.*\r\n\r\n",
    ),
    undefined,
  );
  // Localised, with the server value empty: the header and the bypass list are not servers.
  assert.equal(
    parseWinHttpProxy(
      "\r\nAktuelle WinHTTP-Proxyeinstellungen:\r\n\r\n    Proxyserver :  \r\n" +
        "    Umgehungsliste :  *.intern.example\r\n",
    ),
    undefined,
  );
  // A localised "(none)" is no bypass entry.
  const french = parseWinHttpProxy(
    "\r\nParamètres actuels du proxy WinHTTP :\r\n\r\n" +
      "    Serveur(s) proxy :  proxy.corp.example:3128\r\n    Liste de contournement :  (aucun)\r\n",
  )!;
  assert.equal(french.https?.href, "http://proxy.corp.example:3128/");
  assert.deepEqual(french.bypass, []);
  // Wine's netsh is a stand-in that prints nothing: no proxy is read from it (and no test
  // counts that empty answer as netsh's).
  assert.equal(parseWinHttpProxy(""), undefined);
});

Deno.test("parseScutilProxy reads the HTTPS proxy, the exceptions and a PAC", () => {
  const proxy = parseScutilProxy(SCUTIL_PROXY)!;
  assert.equal(proxy.https?.href, "http://proxy.corp.example:3129/");
  assert.deepEqual(proxy.bypass, ["*.local", "169.254/16", "intranet.corp.example"]);
  assert.equal(proxy.excludeSimple, true);
  assert.equal(proxy.pac, undefined);
  const pac = parseScutilProxy(SCUTIL_PAC)!;
  assert.equal(pac.https, undefined);
  assert.equal(pac.pac, "http://wpad.corp.example/proxy.pac");
  assert.equal(parseScutilProxy(SCUTIL_NONE), undefined);
});

Deno.test("bypass lists: wildcards, short CIDR, <local>, exact names and subdomains", async () => {
  const bypasses = async (os: "windows" | "darwin", output: string, host: string) => {
    const decision = await readOsProxy(
      os,
      new URL(`https://${host}/`),
      () => Promise.resolve(output),
    );
    assert.ok(decision !== undefined, host);
    return decision.hops[0]?.kind === "direct";
  };
  assert.equal(await bypasses("windows", NETSH_PROXY, "platform.corp.example"), true);
  assert.equal(await bypasses("windows", NETSH_PROXY, "10.1.2.3"), true);
  assert.equal(await bypasses("windows", NETSH_PROXY, "platform"), true);
  assert.equal(await bypasses("windows", NETSH_PROXY, "platform.example.com"), false);
  assert.equal(await bypasses("darwin", SCUTIL_PROXY, "printer.local"), true);
  assert.equal(await bypasses("darwin", SCUTIL_PROXY, "169.254.10.20"), true);
  assert.equal(await bypasses("darwin", SCUTIL_PROXY, "169.255.0.1"), false);
  assert.equal(await bypasses("darwin", SCUTIL_PROXY, "intranet.corp.example"), true);
  assert.equal(await bypasses("darwin", SCUTIL_PROXY, "platform.corp.example"), false);
});

Deno.test("readOsProxy runs the tool by absolute path and applies the bypass list", async () => {
  const calls: string[][] = [];
  const run = (output: string) => (path: string, args: string[]) => {
    calls.push([path, ...args]);
    return Promise.resolve(output);
  };
  const target = new URL("https://platform.example.com/");
  const win = await readOsProxy("windows", target, run(NETSH_PROXY));
  assert.deepEqual(calls.at(-1), ["C:\\Windows\\System32\\netsh.exe", "winhttp", "show", "proxy"]);
  assert.equal(
    win?.hops[0]?.kind === "proxy" && win.hops[0].url.href,
    "http://proxy.corp.example:8080/",
  );
  assert.match(win!.source, /WinHTTP/);
  const bypassed = await readOsProxy(
    "windows",
    new URL("https://a.corp.example/"),
    run(NETSH_PROXY),
  );
  assert.deepEqual(bypassed?.hops, [{ kind: "direct" }]);
  assert.equal(await readOsProxy("windows", target, run(NETSH_DIRECT)), undefined);

  const mac = await readOsProxy("darwin", target, run(SCUTIL_PAC), (pac) => {
    assert.equal(pac, "http://wpad.corp.example/proxy.pac");
    return Promise.resolve([{ kind: "proxy", url: new URL("http://from-pac:8080") }]);
  });
  assert.deepEqual(calls.at(-1), ["/usr/sbin/scutil", "--proxy"]);
  assert.match(
    mac!.source,
    /^PAC "http:\/\/wpad.corp.example\/proxy.pac" of the macOS proxy settings/,
  );
  assert.equal(await readOsProxy("linux", target, run(SCUTIL_PROXY)), undefined);
});

Deno.test("OS settings naming only a SOCKS proxy give a socks5 hop (scutil SOCKSProxy, netsh socks=)", () => {
  const scutil = `<dictionary> {
  HTTPEnable : 0
  HTTPSEnable : 0
  SOCKSEnable : 1
  SOCKSPort : 1081
  SOCKSProxy : socks.corp.example
}
`;
  assert.equal(parseScutilProxy(scutil)?.https?.href, "socks5://socks.corp.example:1081");
  const netsh = "\nCurrent WinHTTP proxy settings:\n\n" +
    "    Proxy Server(s) :  socks=socks.corp.example:1080\n" +
    "    Bypass List     :  (none)\n\n";
  assert.equal(parseWinHttpProxy(netsh)?.https?.href, "socks5://socks.corp.example:1080");
  // An HTTPS proxy set as well is preferred.
  assert.equal(
    parseScutilProxy(SCUTIL_PROXY.replace(/}\n$/, "  SOCKSEnable : 1\n  SOCKSProxy : s\n}\n"))
      ?.https?.href,
    "http://proxy.corp.example:3129/",
  );
});
