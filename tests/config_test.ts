import assert from "node:assert/strict";
import { defaultStateDir, resolveConfig } from "../src/config/config.ts";
import { configHost } from "./_support/config_host.ts";
import { isLoopbackHost, parsePlatformUrl } from "../src/wire/platform_url.ts";
import { UsageError } from "../src/errors.ts";
import { rejectsWith } from "./_support/helpers.ts";

const host = configHost;

Deno.test("config precedence is flag > environment > agent.json > default, per field", async () => {
  const files = {
    "/s/agent.json": JSON.stringify({
      log_level: "warn",
      log_format: "json",
      platform_url: "https://file.example",
      auth: "mtls",
      ca_file: "/file/ca.pem",
    }),
  };
  const env = {
    ONECONNECT_LOG_LEVEL: "error",
    ONECONNECT_PLATFORM_URL: "https://env.example",
    ONECONNECT_CA_FILE: "/env/ca.pem",
  };
  const c = await resolveConfig(
    { stateDir: "/s", logLevel: "debug", platformUrl: "https://flag.example" },
    host(env, files),
  );
  assert.equal(c.logLevel, "debug");
  assert.equal(c.sources.logLevel, "flag");
  assert.equal(c.platformUrl?.href, "https://flag.example/");
  assert.equal(c.caFile, "/env/ca.pem");
  assert.equal(c.sources.caFile, "env");
  assert.equal(c.logFormat, "json");
  assert.equal(c.sources.logFormat, "file");
  assert.equal(c.auth, "mtls");

  const d = await resolveConfig({ stateDir: "/s" }, host(env, files));
  assert.equal(d.logLevel, "error");
  assert.equal(d.platformUrl?.href, "https://env.example/");
  assert.equal(d.sources.platformUrl, "env");

  const e = await resolveConfig({ stateDir: "/s" }, host({}, files));
  assert.equal(e.logLevel, "warn");
  assert.equal(e.platformUrl?.href, "https://file.example/");
  assert.equal(e.sources.platformUrl, "file");

  const f = await resolveConfig({ stateDir: "/empty" }, host());
  assert.equal(f.logLevel, "info");
  assert.equal(f.logFormat, "text");
  assert.equal(f.auth, "bearer");
  assert.equal(f.timeoutSeconds, 15);
  assert.equal(f.platformUrl, undefined);
  assert.equal(f.sources.logLevel, "default");
});

Deno.test("state dir comes from flag, then ONECONNECT_STATE_DIR, then the OS default", async () => {
  const env = { ONECONNECT_STATE_DIR: "/from/env", HOME: "/home/u" };
  assert.equal((await resolveConfig({ stateDir: "/from/flag" }, host(env))).stateDir, "/from/flag");
  assert.equal((await resolveConfig({}, host(env))).stateDir, "/from/env");
  assert.equal(
    (await resolveConfig({}, host({ HOME: "/home/u" }))).stateDir,
    "/home/u/.local/state/oneconnect-agent",
  );
});

Deno.test("default state dirs follow each OS and user", () => {
  const d = (os: typeof Deno.build.os, uid: number | null, env: Record<string, string>) =>
    defaultStateDir({ os, uid: () => uid, env: (n) => env[n] });
  assert.equal(d("linux", 0, {}), "/var/lib/oneconnect-agent");
  assert.equal(d("linux", 1000, { HOME: "/h" }), "/h/.local/state/oneconnect-agent");
  assert.equal(d("linux", 1000, { HOME: "/h", XDG_STATE_HOME: "/x" }), "/x/oneconnect-agent");
  assert.equal(d("darwin", 0, {}), "/Library/Application Support/OneConnect Agent");
  assert.equal(
    d("darwin", 501, { HOME: "/Users/a" }),
    "/Users/a/Library/Application Support/OneConnect Agent",
  );
  assert.equal(d("windows", null, { ProgramData: "D:\\PD" }), "D:\\PD\\OneConnect\\Agent");
  assert.equal(d("windows", null, {}), "C:\\ProgramData\\OneConnect\\Agent");
  assert.throws(() => d("linux", 1000, {}), /HOME is not set/);
});

Deno.test("invalid values fail with one line naming the field and value", async () => {
  const bad = async (flags: Record<string, string>, env = {}, files = {}) => {
    const err = await resolveConfig({ stateDir: "/s", ...flags }, host(env, files)).then(
      () => assert.fail("expected an error"),
      (e) => e,
    );
    assert.ok(err instanceof UsageError, String(err));
    assert.equal(err.exitCode, 2);
    assert.ok(!err.message.includes("\n"));
    return err.message as string;
  };
  assert.match(await bad({ logLevel: "loud" }), /log level "loud" \(--log-level\)/);
  assert.match(await bad({}, { ONECONNECT_LOG_FORMAT: "xml" }), /"xml" \(ONECONNECT_LOG_FORMAT\)/);
  assert.match(
    await bad({}, {}, { "/s/agent.json": '{"log_level": 5}' }),
    /agent\.json.*"log_level" is 5/,
  );
  assert.match(
    await bad({}, {}, { "/s/agent.json": '{"timeout_seconds": 0}' }),
    /"timeout_seconds" is 0/,
  );
  assert.match(
    await bad({}, {}, { "/s/agent.json": '{"platfrom_url": "x"}' }),
    /unknown field "platfrom_url"/,
  );
  assert.match(await bad({}, {}, { "/s/agent.json": "{nope" }), /not valid JSON/);
  assert.match(await bad({ auth: "kerberos" }), /auth mode "kerberos"/);
});

Deno.test("platform URLs: https anywhere, http only on loopback, no credentials", () => {
  assert.equal(parsePlatformUrl("https://p.example:8443").href, "https://p.example:8443/");
  assert.equal(parsePlatformUrl("http://127.0.0.1:8080/base").href, "http://127.0.0.1:8080/base/");
  assert.equal(parsePlatformUrl("http://[::1]:1/").href, "http://[::1]:1/");
  assert.throws(() => parsePlatformUrl("http://platform.example"), /Refusing plain http/);
  assert.throws(() => parsePlatformUrl("not a url"), /Invalid platform URL "not a url"/);
  assert.throws(() => parsePlatformUrl("ftp://x"), /scheme must be https/);
  assert.throws(() => parsePlatformUrl("https://u:secretpw@x"), (e: Error) => {
    assert.ok(!e.message.includes("secretpw"));
    return /remove credentials/.test(e.message);
  });
  assert.ok(isLoopbackHost("127.1.2.3") && isLoopbackHost("localhost"));
  assert.ok(!isLoopbackHost("128.0.0.1") && !isLoopbackHost("localhost.evil"));
});

/** A temp dir holding `etc/agent.json` (mode `mode`) with `config`; removed after `fn`. */
async function withSystemConfig(
  config: string | null,
  fn: (path: string, dir: string) => Promise<void>,
  mode = 0o644,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneconnect-sysconf-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.mkdir(`${dir}/etc`, { mode: 0o755 });
    const path = `${dir}/etc/agent.json`;
    if (config !== null) {
      await Deno.writeTextFile(path, config);
      await Deno.chmod(path, mode);
    }
    await fn(path, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("config precedence: flag > environment > state-dir agent.json > system agent.json > default", async () => {
  await withSystemConfig(
    JSON.stringify({
      platform_url: "https://system.example",
      log_level: "warn",
      log_format: "json",
      auth: "mtls",
      interval_seconds: 30,
    }),
    async (path) => {
      const files = { "/s/agent.json": JSON.stringify({ log_level: "error" }) };
      const sys = { ...host({}, files), systemConfigPath: path };
      const c = await resolveConfig({ stateDir: "/s" }, sys);
      assert.equal(c.platformUrl?.href, "https://system.example/");
      assert.equal(c.sources.platformUrl, "system");
      assert.equal(c.logLevel, "error");
      assert.equal(c.sources.logLevel, "file");
      assert.equal(c.logFormat, "json");
      assert.equal(c.intervalSeconds, 30);
      assert.equal(c.systemConfigFile, path);
      const e = await resolveConfig(
        { stateDir: "/s", logFormat: "text" },
        { ...sys, env: (n) => n === "ONECONNECT_PLATFORM_URL" ? "https://env.example" : undefined },
      );
      assert.equal(e.platformUrl?.href, "https://env.example/");
      assert.equal(e.logFormat, "text");
      // --config-file names another system file; without a system path there is no such layer.
      const none = await resolveConfig({ stateDir: "/s" }, host({}, files));
      assert.equal(none.platformUrl, undefined);
      assert.equal(none.systemConfigFile, undefined);
      const flagged = await resolveConfig(
        { stateDir: "/s", systemConfigFile: path },
        host({}, files),
      );
      assert.equal(flagged.platformUrl?.href, "https://system.example/");
    },
  );
});

Deno.test("config: a missing system agent.json is an empty layer; a bad one names its path", async () => {
  await withSystemConfig(null, async (path) => {
    const c = await resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path });
    assert.equal(c.platformUrl, undefined);
  });
  await withSystemConfig('{"platform_url": "http://far.example"}', async (path) => {
    const err = await rejectsWith(
      resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path }),
      UsageError,
    );
    assert.match(err.message, /Refusing plain http:\/\/ to non-loopback host "far\.example"/);
    assert.ok(err.message.includes(path));
  });
  await withSystemConfig('{"proxy_url": "gopher://proxy:70"}', async (path) => {
    const err = await rejectsWith(
      resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path }),
      UsageError,
    );
    assert.ok(err.message.startsWith(`Invalid proxy URL (${path}): `), err.message);
  });
  await withSystemConfig('{"ca_pin": "sha256:00"}', async (path) => {
    const err = await rejectsWith(
      resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path }),
      UsageError,
    );
    assert.match(
      err.message,
      /Invalid configuration ".*etc\/agent\.json": "ca_pin" is "sha256:00"/,
    );
  });
});

Deno.test(
  "config: a system agent.json others can write, or a symlink, is refused (exit 2)",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withSystemConfig('{"platform_url": "https://x.example"}', async (path) => {
      const err = await rejectsWith(
        resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path }),
        UsageError,
      );
      assert.match(err.message, /writable by group or others \(mode 0666\).*chmod go-w/);
    }, 0o666);
    await withSystemConfig('{"platform_url": "https://x.example"}', async (path, dir) => {
      await Deno.chmod(`${dir}/etc`, 0o777);
      const err = await rejectsWith(
        resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path }),
        UsageError,
      );
      assert.match(err.message, /above it is writable by group or others/);
    });
    await withSystemConfig(null, async (path, dir) => {
      await Deno.writeTextFile(`${dir}/real.json`, '{"platform_url": "https://evil.example"}');
      await Deno.symlink(`${dir}/real.json`, path);
      const err = await rejectsWith(
        resolveConfig({ stateDir: "/s" }, { ...host(), systemConfigPath: path }),
        UsageError,
      );
      assert.match(err.message, /symbolic link/);
    });
  },
);

Deno.test("config: trust is one setting, the nearest layer naming a CA file or pins gives it", async () => {
  const pin = `sha256:${"a".repeat(64)}`;
  await withSystemConfig(JSON.stringify({ ca_pin: [pin] }), async (path) => {
    const files = { "/s/agent.json": "{}" };
    const sys = { ...host({}, files), systemConfigPath: path };
    const c = await resolveConfig({ stateDir: "/s" }, sys);
    assert.deepEqual(c.caPins, [pin]);
    assert.equal(c.caFile, undefined);
    assert.equal(c.sources.caFile, "system");
    const env = await resolveConfig({ stateDir: "/s" }, {
      ...sys,
      env: (n) => n === "ONECONNECT_CA_FILE" ? "/env/ca.pem" : undefined,
    });
    assert.equal(env.caFile, "/env/ca.pem");
    assert.equal(env.caPins, undefined);
    const flags = await resolveConfig({ stateDir: "/s", caPins: ["sha256:1"], caFile: "/f" }, sys);
    // Both as flags: enroll refuses that combination itself.
    assert.deepEqual([flags.caFile, flags.caPins], ["/f", ["sha256:1"]]);
  });
});
