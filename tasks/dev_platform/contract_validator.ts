import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { parse as parseYaml } from "yaml";

/** Location of the contract document. */
export const CONTRACT_URL = new URL("../../contract/openapi.yaml", import.meta.url);

// ajv-formats is CommonJS: under Deno the default import is the module's function export.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

const SCHEMA_ID = "urn:oneconnect:contract";
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"] as const;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads and parses the OpenAPI document (YAML). */
export async function loadContractDocument(url: URL = CONTRACT_URL): Promise<Json> {
  const doc: unknown = parseYaml(await Deno.readTextFile(url));
  if (!isObject(doc)) {
    throw new Error(`Cannot load contract: ${url.pathname} is not a YAML mapping`);
  }
  return doc;
}

/** Resolves a local JSON pointer such as `#/components/schemas/Host` inside `doc`. */
export function resolvePointer(doc: Json, ref: string): unknown {
  if (!ref.startsWith("#/")) throw new Error(`Only local references are supported: "${ref}"`);
  let node: unknown = doc;
  for (const raw of ref.slice(2).split("/")) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    if (!isObject(node) || !(key in node)) throw new Error(`Unresolvable reference "${ref}"`);
    node = node[key];
  }
  return node;
}

function deref(doc: Json, node: unknown): unknown {
  let current = node;
  for (let i = 0; i < 16 && isObject(current) && typeof current.$ref === "string"; i++) {
    current = resolvePointer(doc, current.$ref);
  }
  return current;
}

/** Rewrites `#/components/schemas/X` references so ajv can resolve them inside one bundle. */
function rewriteRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (!isObject(node)) return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")) {
      out[k] = `${SCHEMA_ID}#/$defs/${v.slice("#/components/schemas/".length)}`;
    } else {
      out[k] = rewriteRefs(v);
    }
  }
  return out;
}

interface Operation {
  method: string;
  template: string;
  regex: RegExp;
  paramNames: string[];
  literalLength: number;
  node: Json;
}

/** The operation a request matched, with its path parameters. */
export interface MatchedOperation {
  /** Lowercase HTTP method. */
  readonly method: string;
  /** Path template from the document, e.g. `/api/v1/agents/{agent_id}/heartbeats`. */
  readonly template: string;
  /** Path parameters by name. */
  readonly params: Record<string, string>;
}

function formatErrors(validate: ValidateFunction): string[] {
  return (validate.errors ?? []).map((e) =>
    `${e.instancePath === "" ? "(root)" : e.instancePath} ${e.message ?? "is invalid"}`
  );
}

/**
 * Validates requests and responses against the OpenAPI 3.1 document with a JSON Schema 2020-12
 * validator (ajv). Each method returns a list of problems; empty means valid.
 */
export class ContractValidator {
  readonly #doc: Json;
  readonly #ajv: Ajv2020;
  readonly #operations: Operation[] = [];
  readonly #compiled = new WeakMap<object, ValidateFunction>();

  constructor(doc: Json) {
    this.#doc = doc;
    this.#ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
    addFormats(this.#ajv);
    const components = isObject(doc.components) ? doc.components : {};
    const schemas = isObject(components.schemas) ? components.schemas : {};
    this.#ajv.addSchema({ $id: SCHEMA_ID, $defs: rewriteRefs(schemas) });
    const paths = isObject(doc.paths) ? doc.paths : {};
    for (const [template, item] of Object.entries(paths)) {
      if (!isObject(item)) continue;
      const paramNames: string[] = [];
      const pattern = template.split(/(\{[^}]+\})/).map((part) => {
        const m = /^\{([^}]+)\}$/.exec(part);
        if (m) {
          paramNames.push(m[1] ?? "");
          return "([^/]+)";
        }
        return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      }).join("");
      for (const method of METHODS) {
        const node = item[method];
        if (!isObject(node)) continue;
        this.#operations.push({
          method,
          template,
          regex: new RegExp(`^${pattern}$`),
          paramNames,
          literalLength: template.replace(/\{[^}]+\}/g, "").length,
          node,
        });
      }
    }
    // Literal segments win over parameters: `/agents/enroll` before `/agents/{agent_id}`.
    this.#operations.sort((a, b) => b.literalLength - a.literalLength);
  }

  /** Loads the contract document and builds a validator. */
  static async load(url: URL = CONTRACT_URL): Promise<ContractValidator> {
    return new ContractValidator(await loadContractDocument(url));
  }

  #validatorFor(schema: Json): ValidateFunction {
    let fn = this.#compiled.get(schema);
    if (!fn) {
      fn = this.#ajv.compile(rewriteRefs(schema) as Json);
      this.#compiled.set(schema, fn);
    }
    return fn;
  }

  /** Validates `value` against `#/components/schemas/<name>`. */
  validateSchema(name: string, value: unknown): string[] {
    const fn = this.#ajv.getSchema(`${SCHEMA_ID}#/$defs/${name}`);
    if (!fn) return [`schema "${name}" is not in the contract`];
    return fn(value) ? [] : formatErrors(fn);
  }

  /** Finds the documented operation for a method and path, or null. */
  match(method: string, pathname: string): MatchedOperation | null {
    const op = this.#find(method, pathname);
    return op ? { method: op.op.method, template: op.op.template, params: op.params } : null;
  }

  #find(
    method: string,
    pathname: string,
  ): { op: Operation; params: Record<string, string> } | null {
    const m = method.toLowerCase();
    for (const op of this.#operations) {
      if (op.method !== m) continue;
      const match = op.regex.exec(pathname);
      if (!match) continue;
      const params: Record<string, string> = {};
      op.paramNames.forEach((name, i) => {
        params[name] = decodeURIComponent(match[i + 1] ?? "");
      });
      return { op, params };
    }
    return null;
  }

  #parameters(op: Operation): Json[] {
    const list = Array.isArray(op.node.parameters) ? op.node.parameters : [];
    return list.map((p) => deref(this.#doc, p)).filter(isObject);
  }

  /** Validates a request: operation exists, path parameters, and JSON body when one is documented. */
  validateRequest(method: string, pathname: string, body: unknown): string[] {
    const found = this.#find(method, pathname);
    if (!found) return [`${method} ${pathname} is not an operation of the contract`];
    const errors: string[] = [];
    for (const param of this.#parameters(found.op)) {
      if (param.in !== "path" || typeof param.name !== "string" || !isObject(param.schema)) {
        continue;
      }
      const fn = this.#validatorFor(param.schema);
      if (!fn(found.params[param.name])) {
        errors.push(...formatErrors(fn).map((e) => `path parameter ${param.name}: ${e}`));
      }
    }
    const requestBody = deref(this.#doc, found.op.node.requestBody);
    if (isObject(requestBody)) {
      const content = isObject(requestBody.content) ? requestBody.content : {};
      const media = deref(this.#doc, content["application/json"]);
      if (body === undefined) {
        if (requestBody.required === true) errors.push("request body is required");
      } else if (isObject(media) && isObject(media.schema)) {
        const fn = this.#validatorFor(media.schema);
        if (!fn(body)) errors.push(...formatErrors(fn).map((e) => `body ${e}`));
      }
    } else if (body !== undefined) {
      errors.push("request body is not allowed");
    }
    return errors;
  }

  /**
   * Validates a response: status documented, required headers present, media type documented and
   * the body (raw text) parses as JSON matching the schema; an undocumented body must be empty.
   */
  validateResponse(
    method: string,
    pathname: string,
    status: number,
    headers: Headers,
    bodyText: string,
  ): string[] {
    const found = this.#find(method, pathname);
    if (!found) return [`${method} ${pathname} is not an operation of the contract`];
    const responses = isObject(found.op.node.responses) ? found.op.node.responses : {};
    const response = deref(
      this.#doc,
      responses[String(status)] ?? responses[`${String(status)[0]}XX`] ?? responses.default,
    );
    if (!isObject(response)) return [`status ${status} is not documented`];
    const errors: string[] = [];
    const documentedHeaders = isObject(response.headers) ? response.headers : {};
    for (const [name, raw] of Object.entries(documentedHeaders)) {
      const header = deref(this.#doc, raw);
      if (isObject(header) && header.required === true && !headers.has(name)) {
        errors.push(`header ${name} is required`);
      }
    }
    const content = isObject(response.content) ? response.content : null;
    if (!content) {
      if (bodyText !== "") errors.push(`status ${status} must have no body`);
      return errors;
    }
    const mediaType = (headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    const media = deref(this.#doc, content[mediaType]);
    if (!isObject(media)) {
      errors.push(`content type "${mediaType}" is not documented for status ${status}`);
      return errors;
    }
    let body: unknown;
    try {
      body = JSON.parse(bodyText);
    } catch {
      errors.push("body is not JSON");
      return errors;
    }
    if (isObject(media.schema)) {
      const fn = this.#validatorFor(media.schema);
      if (!fn(body)) errors.push(...formatErrors(fn).map((e) => `body ${e}`));
    }
    return errors;
  }
}
