import assert from "node:assert/strict";
import { fromFileUrl } from "./_support/helpers.ts";
import * as z from "../src/zod.ts";
import {
  ENROLLMENT_REJECTION_CODES,
  EnrollRequestSchema,
  EnrollResponseSchema,
  FEATURE_GAP,
  GapSchema,
  HealthResponseSchema,
  HeartbeatDigestRequestSchema,
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  ProblemSchema,
  REJECTION_CODES,
  RenewRequestSchema,
  RenewResponseSchema,
} from "../src/wire/contract.ts";
import { HostSchema, MetricsSchema, NetworkInterfaceSchema } from "../src/wire/telemetry_wire.ts";
import {
  CONTRACT_URL,
  ContractValidator,
  loadContractDocument,
  resolvePointer,
} from "../tasks/dev_platform/contract_validator.ts";

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Who produces the payload: the agent (request) or the platform (response). */
type Direction = "request" | "response";

/**
 * The agent's zod schemas paired with the document's components. Requests are produced by the
 * agent, responses parsed by it: that decides which side may be stricter about `required`.
 */
const PAIRS: [string, z.ZodMiniType, Direction][] = [
  ["NetworkInterface", NetworkInterfaceSchema, "request"],
  ["Host", HostSchema, "request"],
  ["Metrics", MetricsSchema, "request"],
  ["EnrollRequest", EnrollRequestSchema, "request"],
  ["HeartbeatRequest", HeartbeatRequestSchema, "request"],
  ["HeartbeatDigestRequest", HeartbeatDigestRequestSchema, "request"],
  ["Gap", GapSchema, "request"],
  ["RenewRequest", RenewRequestSchema, "request"],
  ["EnrollResponse", EnrollResponseSchema, "response"],
  ["HeartbeatResponse", HeartbeatResponseSchema, "response"],
  ["RenewResponse", RenewResponseSchema, "response"],
  ["HealthResponse", HealthResponseSchema, "response"],
  ["Problem", ProblemSchema, "response"],
];

/** The structural facts compared: property names, required, types, enums and constraints. */
interface Shape {
  any: boolean;
  types: string[];
  enum?: string[];
  constraints: Record<string, unknown>;
  properties?: Record<string, Shape>;
  required?: string[];
  items?: Shape;
  tuple?: Shape[];
}

const SAFE_BOUNDS = new Set([Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]);
const CONSTRAINTS = ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"];

/** Reduces a JSON Schema (zod's or the document's) to a {@linkcode Shape}. */
function shapeOf(schema: unknown, resolve: (ref: string) => unknown, depth = 0): Shape {
  if (depth > 32) throw new Error("schema nesting too deep");
  if (!isObject(schema)) return { any: true, types: [], constraints: {} };
  if (typeof schema.$ref === "string") return shapeOf(resolve(schema.$ref), resolve, depth + 1);
  const branches = [
    ...(Array.isArray(schema.anyOf) ? schema.anyOf : []),
    ...(Array.isArray(schema.oneOf) ? schema.oneOf : []),
    ...(Array.isArray(schema.allOf) ? schema.allOf : []),
  ];
  const own: Shape = { any: false, types: [], constraints: {} };
  if (typeof schema.type === "string") own.types = [schema.type];
  if (Array.isArray(schema.type)) own.types = schema.type.map(String);
  if ("const" in schema) own.enum = [JSON.stringify(schema.const)];
  if (Array.isArray(schema.enum)) own.enum = schema.enum.map((e) => JSON.stringify(e));
  for (const key of CONSTRAINTS) {
    const value = schema[key];
    if (typeof value === "number" && !SAFE_BOUNDS.has(value)) own.constraints[key] = value;
  }
  if (typeof schema.format === "string") own.constraints.format = schema.format;
  else if (typeof schema.pattern === "string") own.constraints.pattern = schema.pattern;
  if (isObject(schema.properties)) {
    own.properties = {};
    for (const [name, sub] of Object.entries(schema.properties)) {
      own.properties[name] = shapeOf(sub, resolve, depth + 1);
    }
    own.required = Array.isArray(schema.required) ? schema.required.map(String).sort() : [];
  }
  if (Array.isArray(schema.prefixItems)) {
    own.tuple = schema.prefixItems.map((s) => shapeOf(s, resolve, depth + 1));
  } else if (isObject(schema.items)) {
    own.items = shapeOf(schema.items, resolve, depth + 1);
  }
  const merged = branches.map((b) => shapeOf(b, resolve, depth + 1)).reduce(merge, own);
  merged.types = [...new Set(merged.types)].sort();
  if (merged.types.length === 0 && !merged.properties && !merged.enum) merged.any = true;
  return merged;
}

/** Union of two shapes (for `anyOf: [X, {type: null}]` and `allOf`). */
function merge(a: Shape, b: Shape): Shape {
  const out: Shape = {
    any: false,
    types: [...a.types, ...b.types],
    constraints: { ...a.constraints, ...b.constraints },
  };
  const en = a.enum ?? b.enum;
  if (en) out.enum = en;
  if (a.properties || b.properties) {
    out.properties = { ...a.properties, ...b.properties };
    out.required = [...new Set([...(a.required ?? []), ...(b.required ?? [])])].sort();
  }
  const items = a.items ?? b.items;
  if (items) out.items = items;
  const tuple = a.tuple ?? b.tuple;
  if (tuple) out.tuple = tuple;
  return out;
}

/** Lists every disagreement between the agent's shape and the document's. */
function compareShapes(agent: Shape, doc: Shape, at: string, direction: Direction): string[] {
  // `z.unknown()` on a response field: the agent accepts anything there and validates it itself.
  if (agent.any && direction === "response") return [];
  const errors: string[] = [];
  const same = (what: string, x: unknown, y: unknown) => {
    if (JSON.stringify(x) !== JSON.stringify(y)) {
      errors.push(
        `${at}: ${what} differ: zod ${JSON.stringify(x)} vs document ${JSON.stringify(y)}`,
      );
    }
  };
  same("types", agent.types, doc.types);
  same("enums", agent.enum?.slice().sort(), doc.enum?.slice().sort());
  same("constraints", sortKeys(agent.constraints), sortKeys(doc.constraints));
  if (agent.properties || doc.properties) {
    const a = agent.properties ?? {};
    const d = doc.properties ?? {};
    for (const name of Object.keys(d)) {
      if (!(name in a)) errors.push(`${at}.${name}: in the document, not in the zod schema`);
    }
    for (const name of Object.keys(a)) {
      if (!(name in d)) errors.push(`${at}.${name}: in the zod schema, not in the document`);
    }
    const ar = new Set(agent.required ?? []);
    const dr = new Set(doc.required ?? []);
    if (direction === "request") {
      // The agent must send everything the document requires.
      for (const name of dr) {
        if (!ar.has(name)) errors.push(`${at}.${name}: required by the document, optional in zod`);
      }
    } else {
      // The agent must not insist on anything the platform may omit.
      for (const name of ar) {
        if (!dr.has(name)) errors.push(`${at}.${name}: required in zod, optional in the document`);
      }
    }
    for (const name of Object.keys(d)) {
      const sa = a[name];
      const sd = d[name];
      if (sa && sd) errors.push(...compareShapes(sa, sd, `${at}.${name}`, direction));
    }
  }
  if (agent.items || doc.items) {
    if (!agent.items || !doc.items) errors.push(`${at}[]: array items differ`);
    else errors.push(...compareShapes(agent.items, doc.items, `${at}[]`, direction));
  }
  if (agent.tuple || doc.tuple) {
    const a = agent.tuple ?? [];
    const d = doc.tuple ?? [];
    if (a.length !== d.length) errors.push(`${at}: tuple length ${a.length} vs ${d.length}`);
    a.forEach((s, i) => {
      const t = d[i];
      if (t) errors.push(...compareShapes(s, t, `${at}[${i}]`, direction));
    });
  }
  return errors;
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}

function zodShape(schema: z.ZodMiniType, direction: Direction): Shape {
  const json = z.toJSONSchema(schema, { io: direction === "request" ? "output" : "input" });
  return shapeOf(json, () => {
    throw new Error("zod JSON Schema has no references");
  });
}

function docShape(doc: Json, name: string): Shape {
  return shapeOf(
    resolvePointer(doc, `#/components/schemas/${name}`),
    (ref) => resolvePointer(doc, ref),
  );
}

/** Every disagreement between the agent's zod schemas and the document. */
function contractDrift(doc: Json, pairs = PAIRS): string[] {
  return pairs.flatMap(([name, schema, direction]) =>
    compareShapes(zodShape(schema, direction), docShape(doc, name), name, direction)
  );
}

const doc = await loadContractDocument();

Deno.test("contract document lints clean with @redocly/cli", async () => {
  const out = await new Deno.Command("npx", {
    args: ["--yes", "@redocly/cli@2.77.0", "lint", "--format=json", fromFileUrl(CONTRACT_URL)],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `redocly lint failed:\n${stdout}\n${stderr}`);
  const report = JSON.parse(stdout.slice(stdout.indexOf("{")));
  assert.deepEqual(report.totals, { errors: 0, warnings: 0, ignored: 0 }, stdout);
});

Deno.test("contract document is OpenAPI 3.1 with the v1 operations and component schemas", () => {
  assert.match(String(doc.openapi), /^3\.1\./);
  const paths = doc.paths as Json;
  assert.deepEqual(Object.keys(paths).sort(), [
    "/api/v1/agents/enroll",
    "/api/v1/agents/{agent_id}",
    "/api/v1/agents/{agent_id}/certificate",
    "/api/v1/agents/{agent_id}/heartbeats",
    "/api/v1/health",
  ]);
  const schemas = (doc.components as Json).schemas as Json;
  for (
    const name of [
      "Host",
      "NetworkInterface",
      "Metrics",
      "EnrollRequest",
      "EnrollResponse",
      "HeartbeatRequest",
      "HeartbeatResponse",
      "RenewRequest",
      "RenewResponse",
      "HealthResponse",
      "Problem",
    ]
  ) assert.ok(name in schemas, `component ${name}`);
  const heartbeat = (paths["/api/v1/agents/{agent_id}/heartbeats"] as Json).post as Json;
  assert.deepEqual(Object.keys(heartbeat.responses as Json).sort(), [
    "200",
    "400",
    "401",
    "403",
    "404",
    "409",
    "410",
    "413",
    "429",
    "503",
  ]);
});

Deno.test("agent zod schemas agree with the contract document", () => {
  assert.deepEqual(contractDrift(doc), []);
});

Deno.test("contract drift check fails when a field is renamed in the document only", () => {
  const drifted = structuredClone(doc);
  const hb = resolvePointer(drifted, "#/components/schemas/HeartbeatRequest") as Json;
  const props = hb.properties as Json;
  props.seq = props.sequence;
  delete props.sequence;
  hb.required = (hb.required as string[]).map((r) => r === "sequence" ? "seq" : r);
  const errors = contractDrift(drifted);
  assert.ok(
    errors.some((e) => e.startsWith("HeartbeatRequest.seq: in the document")),
    errors.join("\n"),
  );
  assert.ok(errors.some((e) => e.startsWith("HeartbeatRequest.sequence: in the zod schema")));
});

Deno.test("contract drift check fails when a field is renamed in the zod schema only", () => {
  const drifted = z.extend(z.omit(HeartbeatRequestSchema, { sent_at: true }), {
    sentAt: z.iso.datetime({ offset: true }),
  });
  const errors = contractDrift(doc, [["HeartbeatRequest", drifted, "request"]]);
  assert.ok(
    errors.some((e) => e.startsWith("HeartbeatRequest.sent_at: in the document")),
    errors.join("\n"),
  );
  assert.ok(errors.some((e) => e.startsWith("HeartbeatRequest.sentAt: in the zod schema")));
});

Deno.test("contract drift check reaches nested fields, types, enums, bounds and optionality", () => {
  const drifted = structuredClone(doc);
  const nic = resolvePointer(drifted, "#/components/schemas/NetworkInterface") as Json;
  (nic.properties as Json).mac_address = (nic.properties as Json).mac;
  delete (nic.properties as Json).mac;
  ((nic.properties as Json).family as Json).enum = ["IPv4", "IPv6", "IPX"];
  const host = resolvePointer(drifted, "#/components/schemas/Host") as Json;
  ((host.properties as Json).cpu_count as Json).type = ["string", "null"];
  const enroll = resolvePointer(drifted, "#/components/schemas/EnrollResponse") as Json;
  ((enroll.properties as Json).heartbeat_interval_seconds as Json).minimum = 1;
  const renew = resolvePointer(drifted, "#/components/schemas/RenewResponse") as Json;
  renew.required = ["certificate"];
  const errors = contractDrift(drifted).join("\n");
  assert.match(errors, /Host\.network_interfaces\[\]\.mac_address: in the document/);
  assert.match(errors, /NetworkInterface\.family: enums differ/);
  assert.match(errors, /Host\.cpu_count: types differ/);
  assert.match(errors, /EnrollResponse\.heartbeat_interval_seconds: constraints differ/);
  assert.match(errors, /RenewResponse\.ca_certificates: required in zod, optional in the document/);
  const optionalInZod = z.extend(EnrollRequestSchema, {
    csr: z.optional(z.string().check(z.minLength(1))),
  });
  assert.match(
    contractDrift(doc, [["EnrollRequest", optionalInZod, "request"]]).join("\n"),
    /EnrollRequest\.csr: required by the document, optional in zod/,
  );
});

const V13_METRICS = {
  uptime_seconds: 10,
  load_average: null,
  memory: null,
  cpu: { user: 12.5, system: 3.1, idle: 84.4, iowait: null, steal: null },
  filesystems: {
    age_seconds: 12,
    mounts: [["/", "ext4", 1000, 600, 500, 100, 90], ["/boot/efi", "vfat", 10, 5, 5, null, null]],
  },
  network: { interval_seconds: 60, interfaces: { eth0: [1, 2, 0, 3, 4, 0], eth1: null } },
};
const V13_HOST = {
  cpu_model: "AMD EPYC",
  cpu_mhz: 2596,
  hardware_vendor: null,
  hardware_model: null,
  hardware_serial: null,
  boot_time: "2026-12-01T01:19:43Z",
  time_zone: "UTC",
  fqdn: null,
  domain: null,
  virtualization: { kind: "container", technology: "docker" },
  agent_platform: "x86_64-unknown-linux-gnu",
};

Deno.test("zod and the document accept and reject the same heartbeat payloads", async () => {
  const validator = await ContractValidator.load();
  const good = {
    agent_id: "agent-1",
    sequence: 1,
    sent_at: "2030-01-01T00:00:00.000Z",
    agent_version: "0.1.0",
    host_digest: "0123456789abcdef".repeat(4),
    host: {
      hostname: null,
      os: "windows",
      arch: "x86_64",
      os_release: null,
      os_name: null,
      os_version: null,
      cpu_count: null,
      machine_id: null,
      network_interfaces: null,
    },
    metrics: { uptime_seconds: null, load_average: null, memory: null },
  };
  const cases: [unknown, boolean][] = [
    [good, true],
    [{ ...good, sequence: 0 }, false],
    [{ ...good, agent_id: "bad id" }, false],
    [{ ...good, sent_at: "yesterday" }, false],
    [{ ...good, metrics: { ...good.metrics, load_average: [1, 2] } }, false],
    [{ ...good, host: { ...good.host, network_interfaces: [{ name: "lo" }] } }, false],
    // v1.3: `host` is required as in v1.0; digest-only beats are HeartbeatDigestRequest.
    [{ ...good, host: undefined }, false],
    [{ ...good, host_digest: undefined }, false],
    [{ ...good, host_digest: "0123456789ABCDEF".repeat(4) }, false],
    [{ ...good, host_digest: "0123456789abcdef".repeat(3) }, false],
    // v1.3 telemetry depth: optional, validated when present.
    [{ ...good, metrics: V13_METRICS, host: { ...good.host, ...V13_HOST } }, true],
    [{ ...good, metrics: { ...V13_METRICS, cpu: null } }, true],
    [{ ...good, metrics: { ...V13_METRICS, cpu: { ...V13_METRICS.cpu, user: 150 } } }, false],
    [
      { ...good, metrics: { ...V13_METRICS, filesystems: { age_seconds: 0, mounts: [["/"]] } } },
      false,
    ],
    [{
      ...good,
      metrics: { ...V13_METRICS, network: { interval_seconds: 60, interfaces: { eth0: [1, 2] } } },
    }, false],
    [{
      ...good,
      metrics: { ...V13_METRICS, network: { interval_seconds: 60, interfaces: { eth0: null } } },
    }, true],
    [{
      ...good,
      host: { ...good.host, ...V13_HOST, virtualization: { kind: "jail", technology: null } },
    }, false],
    [{ ...good, host: { ...good.host, ...V13_HOST, boot_time: "at dawn" } }, false],
  ];
  for (const [payload, valid] of cases) {
    assert.equal(HeartbeatRequestSchema.safeParse(payload).success, valid, JSON.stringify(payload));
    // Through JSON, as on the wire: an `undefined` member is no member at all.
    const wire = JSON.parse(JSON.stringify(payload));
    assert.equal(validator.validateSchema("HeartbeatRequest", wire).length === 0, valid);
  }
  const { host: _host, ...digestOnly } = good;
  const digestCases: [unknown, boolean][] = [
    [digestOnly, true],
    [{ ...digestOnly, host_digest: undefined }, false],
    [{ ...digestOnly, sequence: 0 }, false],
  ];
  for (const [payload, valid] of digestCases) {
    assert.equal(HeartbeatDigestRequestSchema.safeParse(payload).success, valid);
    const wire = JSON.parse(JSON.stringify(payload));
    assert.equal(validator.validateSchema("HeartbeatDigestRequest", wire).length === 0, valid);
    // The operation takes either shape.
    const errors = validator.validateRequest("POST", "/api/v1/agents/agent-1/heartbeats", wire);
    assert.equal(errors.length === 0, valid, errors.join("; "));
  }
});

Deno.test("contract v1.3 lists the rejection codes the agent stops on, and features", () => {
  const info = doc.info as Json;
  assert.equal(info.version, "1.3.0");
  const description = String(info.description);
  for (const code of REJECTION_CODES) assert.match(description, new RegExp(`\`${code}\``));
  assert.match(description, /only after the platform advertised\s+`host_digest`/);
  for (const name of ["EnrollResponse", "HeartbeatResponse"]) {
    const schema = resolvePointer(doc, `#/components/schemas/${name}`) as Json;
    assert.ok(isObject((schema.properties as Json).features), name);
  }
});

Deno.test("zod and the document accept and reject the same heartbeat answers", async () => {
  const validator = await ContractValidator.load();
  const cases: [unknown, boolean][] = [
    [{}, true],
    [{ next_heartbeat_seconds: 60 }, true],
    [{ next_heartbeat_seconds: 60, host_required: true }, true],
    [{ host_required: false }, true],
    [{ host_required: "yes" }, false],
    [{ host_required: 1 }, false],
    [{ features: ["host_digest", "unknown_future_feature"] }, true],
    [{ features: "host_digest" }, false],
  ];
  for (const [payload, valid] of cases) {
    assert.equal(
      HeartbeatResponseSchema.safeParse(payload).success,
      valid,
      JSON.stringify(payload),
    );
    assert.equal(validator.validateSchema("HeartbeatResponse", payload).length === 0, valid);
  }
});

Deno.test("contract v1.3 defines gap and the enrollment rejection codes the agent stops on", () => {
  const description = String((doc.info as Json).description);
  for (const code of ENROLLMENT_REJECTION_CODES) {
    assert.match(description, new RegExp(`\`${code}\``));
  }
  assert.match(description, new RegExp(`advertised the \`${FEATURE_GAP}\` feature`));
  assert.match(description, /uptime_seconds` smaller than the time since `gap.since`/);
  for (const name of ["HeartbeatRequest", "HeartbeatDigestRequest"]) {
    const schema = resolvePointer(doc, `#/components/schemas/${name}`) as Json;
    assert.ok(isObject((schema.properties as Json).gap), name);
    assert.ok(!(schema.required as string[]).includes("gap"), name);
  }
});

Deno.test("zod and the document accept and reject the same gaps", async () => {
  const validator = await ContractValidator.load();
  const good = {
    since: "2030-01-01T00:00:00.000Z",
    attempts: 17,
    last_error: { kind: "tls", status: null, code: null },
  };
  const error = good.last_error;
  const cases: [unknown, boolean][] = [
    [good, true],
    [{ ...good, last_error: { kind: "http", status: 503, code: "unavailable" } }, true],
    [{ ...good, last_error: { ...error, kind: "other" } }, true],
    [{ ...good, attempts: 0 }, false],
    [{ ...good, since: "yesterday" }, false],
    [{ ...good, last_error: { ...error, kind: "certificate expired" } }, false],
    [{ ...good, last_error: { ...error, status: 42 } }, false],
    [{ ...good, last_error: { ...error, code: "Bad Gateway from edge" } }, false],
    [{ ...good, last_error: { ...error, code: "x".repeat(65) } }, false],
    [{ ...good, last_error: { kind: "tls", status: null } }, false],
  ];
  for (const [payload, valid] of cases) {
    assert.equal(GapSchema.safeParse(payload).success, valid, JSON.stringify(payload));
    assert.equal(validator.validateSchema("Gap", payload).length === 0, valid);
  }
});
