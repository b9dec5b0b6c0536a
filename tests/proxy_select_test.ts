import assert from "node:assert/strict";
import { repoPath } from "./_support/helpers.ts";
import { describeDecision, ProxyRoute, type ProxySettings } from "../src/proxy/proxy_select.ts";
import type { ProxyHop } from "../src/proxy/proxy_hop.ts";

const HTTPS = new URL("https://platform.example.com/");
const env = (vars: Record<string, string> = {}) => (name: string) => vars[name];
const proxy = (href: string): ProxyHop => ({ kind: "proxy", url: new URL(href) });

function settings(overrides: Partial<ProxySettings> = {}): ProxySettings & { pacCalls: number } {
  const s = {
    pacCalls: 0,
    env: env(),
    os: "linux" as const,
    ...overrides,
  };
  return s;
}

Deno.test("proxy order: agent.json proxy_url > environment > PAC > OS > direct", async () => {
  const pac = () => Promise.resolve([proxy("http://pac:1")]);
  const os = () => Promise.resolve({ hops: [proxy("http://os:1")], source: "the OS" });
  const all = settings({
    proxyUrl: new URL("http://file:1"),
    env: env({ HTTPS_PROXY: "http://env:1" }),
    pac: "http://wpad/proxy.pac",
    evaluatePac: pac,
    readOsProxy: os,
  });
  const describe = async (s: ProxySettings) =>
    describeDecision(await new ProxyRoute(HTTPS, s).decide());
  assert.equal(await describe(all), "http://file:1 (from agent.json proxy_url)");
  assert.equal(
    await describe({ ...all, proxyUrl: undefined }),
    "http://env:1 (from environment HTTPS_PROXY)",
  );
  assert.equal(
    await describe({ ...all, proxyUrl: undefined, env: env() }),
    'http://pac:1 (from PAC "http://wpad/proxy.pac")',
  );
  assert.equal(
    await describe({ ...all, proxyUrl: undefined, env: env(), pac: undefined }),
    "http://os:1 (from the OS)",
  );
  assert.equal(
    await describe(settings()),
    "direct (from no proxy configured)",
  );
});

Deno.test("plain http is never proxied, whatever the settings say", async () => {
  const route = new ProxyRoute(
    new URL("http://127.0.0.1:8080/"),
    settings({
      proxyUrl: new URL("http://file:1"),
      env: env({ HTTP_PROXY: "http://env:1", http_proxy: "http://env:2" }),
      pac: "/etc/proxy.pac",
      evaluatePac: () => Promise.reject(new Error("must not be evaluated")),
      readOsProxy: () => Promise.reject(new Error("must not be read")),
    }),
  );
  assert.deepEqual(route.known?.hops, [{ kind: "direct" }]);
  assert.deepEqual((await route.decide()).hops, [{ kind: "direct" }]);
});

Deno.test("a lookup ended by its signal (the agent stopping) decides nothing, so the next one looks again", async () => {
  let lookups = 0;
  const route = new ProxyRoute(
    HTTPS,
    settings({
      pac: "/etc/proxy.pac",
      os: "windows",
      evaluatePac: (_pac, _target, signal) => {
        lookups++;
        return new Promise((_, reject) => {
          if (signal?.aborted) reject(new Error("aborted"));
          signal?.addEventListener("abort", () => reject(new Error("aborted")));
        });
      },
      readOsProxy: () => Promise.reject(new Error("must not be read after an abort")),
    }),
  );
  const controller = new AbortController();
  const deciding = route.decide(controller.signal);
  controller.abort();
  await assert.rejects(deciding, /aborted/);
  assert.equal(route.known, undefined);
  await assert.rejects(route.decide(AbortSignal.abort()), /aborted/);
  assert.equal(lookups, 2);
});

Deno.test("NO_PROXY from the environment wins, and no lookup is needed without PAC or OS", () => {
  // What a route knows before any lookup.
  const known = (s: ProxySettings) => new ProxyRoute(HTTPS, s).known;
  const d = known({
    env: env({ NO_PROXY: ".example.com", HTTPS_PROXY: "http://env:1" }),
    pac: "/p.pac",
  });
  assert.equal(d?.source, "environment NO_PROXY");
  assert.equal(known({ env: env(), pac: "/p.pac" }), undefined);
  assert.equal(known({ env: env(), os: "windows" }), undefined);
  assert.equal(known({ env: env(), os: "linux" })?.source, "no proxy configured");
});

Deno.test("a PAC that fails is reported and the route goes on to direct", async () => {
  const warnings: string[] = [];
  const logger = { warn: (m: string) => warnings.push(m) } as unknown as ProxySettings["logger"];
  const route = new ProxyRoute(
    HTTPS,
    settings({
      pac: "/etc/broken.pac",
      evaluatePac: () => Promise.reject(new Error("FindProxyForURL failed: SyntaxError")),
      logger,
    }),
  );
  const d = await route.decide();
  assert.deepEqual(d.hops, [{ kind: "direct" }]);
  assert.equal(
    describeDecision(d),
    'direct (from no usable proxy setting; PAC "/etc/broken.pac" failed: FindProxyForURL failed: SyntaxError)',
  );
  assert.equal(warnings.length, 1);
});

Deno.test("the PAC is evaluated once, and again only after invalidate", async () => {
  let calls = 0;
  const route = new ProxyRoute(
    HTTPS,
    settings({
      pac: "/etc/proxy.pac",
      evaluatePac: () => {
        calls++;
        return Promise.resolve([proxy(`http://pac:${calls}`)]);
      },
    }),
  );
  assert.equal(route.known, undefined);
  await route.decide();
  await route.decide();
  assert.equal(calls, 1);
  route.invalidate();
  assert.equal(describeDecision(await route.decide()), 'http://pac:2 (from PAC "/etc/proxy.pac")');
  // A decision that needed no lookup is kept.
  const fixed = new ProxyRoute(HTTPS, settings({ proxyUrl: new URL("http://file:1") }));
  fixed.invalidate();
  assert.ok(fixed.known);
});

Deno.test("describeDecision never shows proxy credentials", () => {
  assert.equal(
    describeDecision({ hops: [proxy("http://user:pw@p:1"), { kind: "direct" }], source: "x" }),
    "http://p:1, then direct (from x)",
  );
});

Deno.test("PAC and OS proxy code are loaded only dynamically, never on a plain run", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "src/main.ts"],
    cwd: repoPath(),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: Array<
      {
        specifier: string;
        dependencies?: Array<{ code?: { specifier: string }; isDynamic?: boolean }>;
      }
    >;
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const root = info.modules.find((m) => m.specifier.endsWith("/src/commands/run.ts"))!;
  const seen = new Set<string>();
  const stack = [
    root.specifier,
    ...info.modules.filter((m) => m.specifier.endsWith("/src/main.ts")).map((m) => m.specifier),
  ];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    for (const dep of bySpecifier.get(s)?.dependencies ?? []) {
      if (!dep.isDynamic && dep.code) stack.push(dep.code.specifier);
    }
  }
  const loaded = [...seen].map((s) => s.split("/").at(-1));
  assert.ok(loaded.includes("proxy_select.ts"));
  for (const lazy of ["pac.ts", "pac_worker.ts", "os_proxy.ts"]) {
    assert.ok(!loaded.includes(lazy), `${lazy} is loaded statically by run`);
  }
});
