// Each setting is declared once (src/config/settings.ts): the docs table is rendered from the rows,
// and every flag, variable and agent.json key a row names reaches the resolved configuration.
import assert from "node:assert/strict";
import { commandHelp, COMMANDS, GLOBAL_FLAGS, parseArgv, programHelp } from "../src/cli.ts";
import { ENV_VARS, resolveConfig } from "../src/config/config.ts";
import { FileConfigSchema } from "../src/config/config_file.ts";
import {
  type RawValue,
  settingFlagValues,
  type SettingKey,
  SETTINGS,
  type SettingSpec,
} from "../src/config/settings.ts";
import { PAGE, renderSettingsTable, replaceTable, settingsRows } from "../tasks/settings_table.ts";
import { configHost } from "./_support/config_host.ts";
import { repoPath } from "./_support/helpers.ts";

const rows = SETTINGS as readonly SettingSpec[];

Deno.test("docs/configuration.md's settings table is the one src/config/settings.ts renders", async () => {
  const page = await Deno.readTextFile(repoPath(PAGE));
  assert.equal(
    replaceTable(page, renderSettingsTable()),
    page,
    `${PAGE} differs from src/config/settings.ts: run deno task settings-table`,
  );
  // The comparison sees a changed cell, and every setting has its row.
  const drifted = page.replace("`ONECONNECT_LOG_LEVEL`", "`ONECONNECT_LOGLEVEL` ");
  assert.notEqual(replaceTable(drifted, renderSettingsTable()), drifted);
  assert.equal(settingsRows().length, rows.length);
  for (const s of rows) {
    const row = settingsRows()[rows.indexOf(s)]!.join(" ");
    for (const name of [s.flag && `--${s.flag.name}`, s.env, s.file]) {
      if (name) assert.ok(row.includes(name), `${s.key}: ${name} missing in "${row}"`);
    }
  }
});

/** A value for each setting: as a flag or variable gives it, as agent.json holds it, as resolved. */
const SAMPLES: Record<SettingKey, { raw: string; json: unknown; resolved: unknown }> = {
  stateDir: { raw: "/elsewhere", json: undefined, resolved: "/elsewhere" },
  systemConfigFile: { raw: "/none/agent.json", json: undefined, resolved: "/none/agent.json" },
  platformUrl: {
    raw: "https://p.example",
    json: "https://p.example",
    resolved: new URL("https://p.example"),
  },
  caFile: { raw: "/ca.pem", json: "/ca.pem", resolved: "/ca.pem" },
  caPins: { raw: "sha256:ab", json: ["sha256:ab"], resolved: ["sha256:ab"] },
  logLevel: { raw: "warn", json: "warn", resolved: "warn" },
  logFormat: { raw: "json", json: "json", resolved: "json" },
  auth: { raw: "mtls", json: "mtls", resolved: "mtls" },
  proxyUrl: {
    raw: "http://proxy.example:3128",
    json: "http://proxy.example:3128",
    resolved: new URL("http://proxy.example:3128"),
  },
  proxyPac: {
    raw: "http://wpad/proxy.pac",
    json: "http://wpad/proxy.pac",
    resolved: "http://wpad/proxy.pac",
  },
  timeoutSeconds: { raw: "30", json: 30, resolved: 30 },
  intervalSeconds: { raw: "30", json: 30, resolved: 30 },
  metricsFile: { raw: "/m.prom", json: "/m.prom", resolved: "/m.prom" },
};

/** The CA file and pins share one source (the trust is one setting). */
const sourceKey = (key: string) => key === "caPins" ? "caFile" : key;

Deno.test("every setting's flag, variable and agent.json key reaches the resolved configuration", async () => {
  assert.deepEqual(Object.keys(SAMPLES).sort(), rows.map((s) => s.key).sort());
  for (const s of rows) {
    const sample = SAMPLES[s.key as SettingKey];
    const check = (config: Record<string, unknown>, source: string, how: string) => {
      assert.deepEqual(config[s.key], sample.resolved, `${s.key} by ${how}`);
      if (s.key !== "systemConfigFile") {
        assert.equal(
          (config.sources as Record<string, string>)[sourceKey(s.key)],
          source,
          `${s.key} by ${how}`,
        );
      }
    };
    if (s.flag) {
      // Through the parser, as some command (or every one) takes it.
      const global = GLOBAL_FLAGS.some((f) => f.name === s.flag!.name);
      const command = COMMANDS.find((c) => c.flags.some((f) => f.name === s.flag!.name));
      assert.ok(global || command, `no command takes --${s.flag.name}`);
      const invocation = parseArgv([
        (command ?? COMMANDS.find((c) => c.name === "status")!).name,
        `--${s.flag.name}`,
        sample.raw,
      ]);
      assert.ok(invocation.kind === "command");
      const flags = settingFlagValues(invocation.flags);
      const config = await resolveConfig({ stateDir: "/s", ...flags }, configHost());
      check(config as unknown as Record<string, unknown>, "flag", `--${s.flag.name}`);
    }
    if (s.env) {
      assert.ok(Object.values(ENV_VARS).includes(s.env as never), `${s.env} not in ENV_VARS`);
      const config = await resolveConfig({}, configHost({ [s.env]: sample.raw, HOME: "/h" }));
      check(config as unknown as Record<string, unknown>, "env", s.env);
    }
    if (s.file) {
      assert.ok(s.file in FileConfigSchema.shape, `${s.file} not in the agent.json schema`);
      const files = { "/s/agent.json": JSON.stringify({ [s.file]: sample.json }) };
      const config = await resolveConfig({ stateDir: "/s" }, configHost({}, files));
      check(config as unknown as Record<string, unknown>, "file", s.file);
    }
    assert.ok(s.flag || s.env || s.file, `${s.key} can be set nowhere`);
  }
  // The agent.json schema has no key of its own.
  assert.deepEqual(
    Object.keys(FileConfigSchema.shape),
    rows.flatMap((s) => s.file === undefined ? [] : [s.file]),
  );
});

Deno.test("--help names each setting flag's environment variable", () => {
  const help = [programHelp(), ...COMMANDS.map((c) => commandHelp(c))].join("\n")
    .replace(/\n +/g, " ");
  for (const s of rows) {
    if (!s.flag) continue;
    assert.match(help, new RegExp(`--${s.flag.name} <${s.flag.value.replace("|", "\\|")}>`));
    if (s.env) assert.ok(help.includes(`(env ${s.env}`), `--${s.flag.name}: ${s.env}`);
  }
});

Deno.test("a flag value the table maps is the resolved value: flags win over every layer", async () => {
  const values: Partial<Record<SettingKey, RawValue>> = settingFlagValues({
    "log-level": "error",
    "state-dir": "/s",
    once: true,
  });
  assert.deepEqual(values, { logLevel: "error", stateDir: "/s" });
  const config = await resolveConfig(
    values,
    configHost({ ONECONNECT_LOG_LEVEL: "warn" }, { "/s/agent.json": '{"log_level":"debug"}' }),
  );
  assert.equal(config.logLevel, "error");
});
