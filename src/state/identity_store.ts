import * as z from "../zod.ts";
import { parsePlatformUrl } from "../wire/platform_url.ts";
import { AgentIdSchema } from "../wire/contract.ts";
import { errorMessage, NotEnrolledError, UsageError } from "../errors.ts";
import {
  denoFileSystem,
  fileErrorReason,
  type FileSystem,
  join,
  lstatOrNull,
  tempFilePattern,
} from "../file_system.ts";
import { parseJsonDocument } from "../json_document.ts";
import { type Logger, registerSecret, silentLogger } from "../log.ts";
import { STATUS_FILE_NAME } from "./status_store.ts";
import {
  auditStateDirOwnership,
  type OwnershipHost,
  requireKind,
  requireOwner,
  requireSafeParents,
} from "./ownership.ts";
import { type CommandRunner, denoCommandRunner } from "./windows_acl.ts";
import { FILE_MODE, type PermissionRepair, StatePermissions } from "./permissions.ts";
import { TrustSchema } from "../trust/trust_source.ts";
import { keyMatchesCertificate } from "../trust/key_match.ts";

/** Everything the agent holds about its enrolled identity, stored as one file (`identity.json`). */
export const IdentitySchema = z.object({
  version: z.literal(1),
  agent_id: AgentIdSchema,
  platform_url: z.string(),
  /** The agent's certificate (the leaf alone). */
  certificate: z.string(),
  /**
   * The intermediate CAs between the certificate and `ca_certificates`, issuer of the leaf first,
   * presented with it in mTLS. Absent in files written before chains were stored: none.
   */
  intermediate_certificates: z.optional(
    z.array(z.string().check(z.includes("-----BEGIN CERTIFICATE-----"))),
  ),
  ca_certificates: z.array(z.string().check(z.minLength(1))),
  bootstrap_ca_certificates: z.array(z.string().check(z.minLength(1))),
  private_key: z.string(),
  service_account_token: z.string().check(z.minLength(1)),
  machine_id: z.nullable(z.string()),
  enrolled_at: z.iso.datetime(),
  heartbeat_interval_seconds: z.int(),
  certificate_not_before: z.iso.datetime(),
  certificate_not_after: z.iso.datetime(),
  /** What enrollment trusted for the platform's server (absent in files from older agents). */
  trust: z.optional(TrustSchema),
});
/** The agent's identity. */
export type Identity = z.infer<typeof IdentitySchema>;

/** Name of the identity file inside the state directory. */
/** Name of the identity file inside the state directory. */
export const IDENTITY_FILE_NAME = "identity.json";
/** Name of the bootstrap enrollment token an MDM may drop into the state directory. */
export const ENROLLMENT_TOKEN_FILE_NAME = "enrollment.token";

// Files audited at every start: each may hold a secret or facts about one.
const AUDITED_FILES = [IDENTITY_FILE_NAME, STATUS_FILE_NAME, ENROLLMENT_TOKEN_FILE_NAME];
/** Temp files an interrupted atomic write can leave behind; they may hold the key and token. */
const TEMP_FILES = [tempFilePattern(IDENTITY_FILE_NAME), tempFilePattern(STATUS_FILE_NAME)];
/** Age after which a temp file cannot belong to a write still in progress in another process. */
const STALE_TEMP_MS = 60_000;

/** Options for {@linkcode IdentityStore}. */
export interface IdentityStoreOptions {
  fs?: FileSystem;
  logger?: Logger;
  /** Operating system whose permission model applies (defaults to the running one). */
  os?: typeof Deno.build.os;
  /** Runs icacls and PowerShell on Windows. */
  runCommand?: CommandRunner;
  /** Owner and parent checks (POSIX); defaults to the real uid, `fs.lstat` and `Deno.realPath`. */
  ownership?: OwnershipHost;
}

/** Reads, writes, audits and removes the agent's identity in its state directory. */
export class IdentityStore {
  /** The state directory. */
  readonly stateDir: string;
  /** `<stateDir>/identity.json`. */
  readonly identityPath: string;
  readonly #fs: FileSystem;
  readonly #logger: Logger;
  readonly #os: typeof Deno.build.os;
  readonly #runCommand: CommandRunner;
  readonly #ownership: OwnershipHost;
  readonly #permissions: StatePermissions;

  constructor(stateDir: string, options: IdentityStoreOptions = {}) {
    this.stateDir = stateDir;
    this.identityPath = join(stateDir, IDENTITY_FILE_NAME);
    this.#fs = options.fs ?? denoFileSystem;
    this.#logger = options.logger ?? silentLogger;
    this.#os = options.os ?? Deno.build.os;
    this.#runCommand = options.runCommand ?? denoCommandRunner;
    const fs = this.#fs;
    const os = this.#os;
    this.#ownership = options.ownership ?? {
      uid: () => (os === "windows" ? null : Deno.uid()),
      lstat: (path) => fs.lstat(path),
      realPath: (path) => Deno.realPath(path),
    };
    this.#permissions = new StatePermissions({
      fs,
      logger: this.#logger,
      os,
      runCommand: this.#runCommand,
      ownership: this.#ownership,
    });
  }

  /** Path of another file in the state directory. */
  secretFilePath(name: string): string {
    return join(this.stateDir, name);
  }

  /** Creates the state directory with mode 0700 (ACL on Windows), tightening an existing one. */
  async ensureStateDir(): Promise<void> {
    await requireSafeParents(this.stateDir, this.#ownership);
    let info = await this.#lstatOrNull(this.stateDir);
    if (info === null) {
      try {
        await this.#permissions.createDir(this.stateDir);
        info = await this.#fs.lstat(this.stateDir);
      } catch (e) {
        throw new UsageError(
          `Cannot create state directory ${JSON.stringify(this.stateDir)}: ${fileErrorReason(e)}`,
        );
      }
    }
    await this.#permissions.secureDir(this.stateDir, info);
  }

  /** Whether an identity file is present (whatever its state). */
  async exists(): Promise<boolean> {
    return (await this.#lstatOrNull(this.identityPath)) !== null;
  }

  /**
   * Loads and validates the identity, cross-checks its key against its certificate, and
   * registers its secrets for redaction.
   */
  async load(): Promise<Identity> {
    const path = this.identityPath;
    const info = await this.#lstatOrNull(path);
    if (info === null) {
      throw new NotEnrolledError(
        `Not enrolled: no identity at ${JSON.stringify(path)}; run oneconnect-agent enroll`,
      );
    }
    requireKind(path, info, "file");
    await auditStateDirOwnership(this.stateDir, this.#ownership);
    requireOwner(path, info, this.#ownership.uid());
    let text: string;
    try {
      text = await this.#fs.readTextFile(path);
    } catch (e) {
      throw new UsageError(
        `Cannot read identity file ${JSON.stringify(path)}: ${fileErrorReason(e)}`,
      );
    }
    const corrupt = (why: string) =>
      new UsageError(
        `Corrupt identity file ${
          JSON.stringify(path)
        }: ${why}; restore it from a backup, or re-enroll with --force to replace it`,
      );
    const parsed = parseJsonDocument(IdentitySchema, text);
    if (!parsed.ok && parsed.notJson) {
      throw corrupt(text.trim() === "" ? "file is empty" : "not valid JSON (truncated?)");
    }
    if (!parsed.ok) {
      // The value is never shown: the field may be a secret.
      const issue = parsed.error.issues[0];
      const field = issue?.path.map(String).join(".") || "document";
      throw corrupt(`"${field}" ${issue?.message ?? "is invalid"}`);
    }
    const identity = parsed.data;
    registerSecret(identity.private_key);
    registerSecret(identity.service_account_token);
    // Fail closed: a file that would send the token in clear or to an unpinned server is refused.
    const unsafe = (why: string) =>
      new UsageError(
        `Refusing identity file ${
          JSON.stringify(path)
        }: ${why}; re-enroll with "oneconnect-agent enroll --force"`,
      );
    let platformUrl: URL;
    try {
      platformUrl = parsePlatformUrl(identity.platform_url, IDENTITY_FILE_NAME);
    } catch {
      // The value is never shown, as for schema errors: a damaged file may hold a secret there.
      throw unsafe(`"platform_url" is neither https:// nor http:// on loopback`);
    }
    // An identity enrolled on the OS trust store may hold no CA; any other needs one to pin.
    if (
      platformUrl.protocol === "https:" && identity.ca_certificates.length === 0 &&
      identity.bootstrap_ca_certificates.length === 0 && identity.trust?.source !== "system"
    ) {
      throw unsafe(
        '"ca_certificates" and "bootstrap_ca_certificates" are both empty, so no server could be pinned',
      );
    }
    const match = await keyMatchesCertificate(identity.private_key, identity.certificate);
    if (match === "bad-key") throw corrupt("private_key is not a PKCS#8 ECDSA P-256 key");
    if (match === "bad-certificate") throw corrupt("certificate is not a PEM certificate");
    if (match === "mismatch") throw corrupt("private_key does not match the certificate");
    return identity;
  }

  /** Writes the identity atomically with mode 0600 (one rename: old or new, never half). */
  async save(identity: Identity): Promise<void> {
    const checked = IdentitySchema.parse(identity);
    await this.ensureStateDir();
    try {
      await this.#fs.writeFileAtomic(
        this.identityPath,
        `${JSON.stringify(checked, null, 2)}\n`,
        FILE_MODE,
      );
    } catch (e) {
      throw new UsageError(
        `Cannot write identity file ${JSON.stringify(this.identityPath)}: ${
          errorMessage(e)
        }; the previous file, if any, is unchanged`,
      );
    }
  }

  /** Removes the identity and the heartbeat status; returns the paths that were removed. */
  async remove(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of [IDENTITY_FILE_NAME, STATUS_FILE_NAME]) {
      const path = this.secretFilePath(name);
      if ((await this.#lstatOrNull(path)) === null) continue;
      try {
        await this.#fs.remove(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw new UsageError(`Cannot remove ${JSON.stringify(path)}: ${errorMessage(e)}`);
      }
      removed.push(path);
    }
    removed.push(...await this.#removeTempFiles(0));
    return removed;
  }

  /**
   * Tightens a group/other-accessible state directory (to 0700) and secret files (to 0600), and
   * refuses unsafe ones (see {@linkcode StatePermissions.audit}); on POSIX also deletes stale temp
   * files of interrupted writes.
   */
  async auditPermissions(): Promise<PermissionRepair[]> {
    const files = AUDITED_FILES.map((name) => this.secretFilePath(name));
    const repairs = await this.#permissions.audit(this.stateDir, files);
    if (this.#os !== "windows") await this.#removeTempFiles(STALE_TEMP_MS);
    return repairs;
  }

  /** Deletes temp files left by a write that was killed before its rename (they hold secrets). */
  async #removeTempFiles(minAgeMs: number): Promise<string[]> {
    let names: string[];
    try {
      names = await this.#fs.readDir(this.stateDir);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const name of names) {
      if (!TEMP_FILES.some((pattern) => pattern.test(name))) continue;
      const path = this.secretFilePath(name);
      const info = await this.#lstatOrNull(path);
      if (info === null || !info.isFile) continue;
      const age = Date.now() - (info.mtime?.getTime() ?? 0);
      if (age < minAgeMs) continue;
      try {
        await this.#fs.remove(path);
        removed.push(path);
        this.#logger.info(`Removed ${JSON.stringify(path)} left by an interrupted write`, { path });
      } catch (e) {
        this.#logger.warn(`Cannot remove ${JSON.stringify(path)}: ${errorMessage(e)}`, {
          path,
        });
      }
    }
    return removed;
  }

  #lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
    return lstatOrNull(this.#fs, path);
  }
}
