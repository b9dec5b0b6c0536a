/**
 * The maintainer scripts of the .deb (postinst, prerm, postrm) and the scriptlets of the .rpm
 * (%post, %preun, %postun), built from one set of shell functions so both formats do the same:
 *
 * - install / upgrade: state directory 0700; `oneconnect-agent provision` when any ONECONNECT_*
 *   provisioning variable was given to dpkg/apt/rpm (a failure warns, never fails the install);
 *   units enabled (also offline, in an image build); with systemd running, the path unit started
 *   and the service started (install) or restarted exactly once (upgrade) when an identity or a
 *   token exists.
 * - upgrade never stops the service from the OLD package's scripts: rpm installs the new package
 *   before it removes the old one (`$1` = 1 in the old %preun/%postun), dpkg calls the old prerm
 *   with `upgrade`; both are no-ops, so the service is never left stopped or disabled.
 * - remove: path unit and service stopped, both disabled; the identity is kept.
 * - purge (deb `dpkg -P`/`apt-get purge`; rpm `ONECONNECT_PURGE=1 rpm -e`): `unenroll` attempted
 *   with a short deadline while the binary is still installed (a platform that does not answer
 *   never blocks or fails the purge), then state, cache and configuration deleted.
 *
 * @module
 */
import {
  BIN_PATH,
  CONFIG_PATH,
  ENROLL_PATH_UNIT,
  PACKAGE_NAME,
  SERVICE_CACHE_DIR,
  SERVICE_UNIT,
  STATE_DIR,
  TOKEN_PATH,
  UNIT_DIR,
} from "./layout.ts";

/** Seconds the purge's `unenroll` may take before it is abandoned (the agent's own is 10 s). */
export const PURGE_UNENROLL_SECONDS = 15;

/** The provisioning variables whose presence makes the install call `provision`. */
export const PROVISION_VARIABLES = [
  "ONECONNECT_PLATFORM_URL",
  "ONECONNECT_CA_FILE",
  "ONECONNECT_CA_PIN",
  "ONECONNECT_ENROLLMENT_TOKEN",
] as const;

// By name: dpkg and rpm run scripts with /usr/bin on PATH (lintian: command-with-path-in-maintainer-script).
const BIN_NAME = BIN_PATH.slice(BIN_PATH.lastIndexOf("/") + 1);
const CONFIG_DIR = CONFIG_PATH.slice(0, CONFIG_PATH.lastIndexOf("/"));

/** Shell functions shared by every script (POSIX sh, `set -e` safe). */
const FUNCTIONS = `
oc_units() {
  for unit in ${ENROLL_PATH_UNIT} ${SERVICE_UNIT}; do
    if [ -e ${UNIT_DIR}/$unit ]; then echo $unit; fi
  done
}

oc_systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# $1 = install | upgrade
oc_after_install() {
  # 0700 when created here; the unit's StateDirectoryMode=0700 enforces it at every start.
  mkdir -p -m 0700 ${STATE_DIR}
  if [ -n "${PROVISION_VARIABLES.map((v) => `\${${v}:-}`).join("")}" ]; then
    # provision validates and stores what it was given; it never prints the token.
    if ! ${BIN_NAME} provision; then
      echo "${PACKAGE_NAME}: provisioning failed (see above); the package is installed. Fix the variables and run: ${BIN_NAME} provision" >&2
    fi
  fi
  if ! command -v systemctl >/dev/null 2>&1; then return 0; fi
  # Works without a running systemd too (image builds): only symlinks are written.
  # --no-reload: one daemon-reload below (it also picks up the units an upgrade replaced).
  systemctl enable --no-reload $(oc_units) >/dev/null 2>&1 ||
    echo "${PACKAGE_NAME}: warning: could not enable $(oc_units | tr '\\n' ' ')" >&2
  if ! oc_systemd_running; then return 0; fi
  systemctl daemon-reload || true
  if [ -e ${UNIT_DIR}/${ENROLL_PATH_UNIT} ]; then systemctl start ${ENROLL_PATH_UNIT} || true; fi
  if [ -e ${STATE_DIR}/identity.json ] || [ -e ${TOKEN_PATH} ]; then
    if [ "$1" = upgrade ]; then
      # The one restart of an upgrade: the new binary runs from here on.
      systemctl restart ${SERVICE_UNIT} || echo "${PACKAGE_NAME}: warning: restart failed; see journalctl -u ${SERVICE_UNIT}" >&2
    else
      systemctl start ${SERVICE_UNIT} || echo "${PACKAGE_NAME}: warning: start failed; see journalctl -u ${SERVICE_UNIT}" >&2
    fi
  else
    echo "${PACKAGE_NAME}: not enrolled yet; the service starts when a token is provisioned (ONECONNECT_* variables, or ${BIN_NAME} provision)" >&2
  fi
}

oc_before_remove() {
  if ! command -v systemctl >/dev/null 2>&1; then return 0; fi
  if oc_systemd_running; then
    # The path unit first, or it would start the service again.
    systemctl stop $(oc_units) || true
  fi
  systemctl disable $(oc_units) >/dev/null 2>&1 || true
}

oc_unenroll() {
  if [ -e ${STATE_DIR}/identity.json ] && command -v ${BIN_NAME} >/dev/null 2>&1; then
    # Best effort: the platform may be gone; never block or fail the purge on it.
    if ! timeout -k 2 ${PURGE_UNENROLL_SECONDS} ${BIN_NAME} --state-dir ${STATE_DIR} unenroll --yes >&2; then
      echo "${PACKAGE_NAME}: could not unenroll from the platform; deleting the local identity anyway" >&2
    fi
  fi
}

oc_purge() {
  rm -rf ${STATE_DIR} ${SERVICE_CACHE_DIR} ${CONFIG_DIR}
}

oc_daemon_reload() {
  if oc_systemd_running; then systemctl daemon-reload || true; fi
}
`;

/** Each function of {@linkcode FUNCTIONS} by name, with the comment lines before it. */
const DEFINITIONS = new Map(
  FUNCTIONS.trim().split(/\n\n+/).map((block) => [block.match(/^(oc_\w+)\(\)/m)![1]!, block]),
);

/**
 * The functions `body` calls, directly or through another: each script carries only what it
 * uses (rpmlint flags `rm` in every scriptlet that merely defines the purge).
 */
function functionsFor(body: string): string {
  const used = new Set<string>();
  const visit = (text: string) => {
    for (const [name, block] of DEFINITIONS) {
      if (!used.has(name) && new RegExp(`\\b${name}\\b(?!\\(\\))`).test(text)) {
        used.add(name);
        visit(block);
      }
    }
  };
  visit(body);
  return [...DEFINITIONS].filter(([name]) => used.has(name)).map(([, b]) => b).join("\n\n");
}

function script(header: string, body: string): string {
  return `#!/bin/sh\n# ${header} (generated by tasks/package/scripts.ts)\nset -e\n\n${
    functionsFor(body)
  }\n\n${body.trim()}\n\nexit 0\n`;
}

/** The .deb's maintainer scripts, by DEBIAN/ file name. */
export function debScripts(): Record<"postinst" | "prerm" | "postrm", string> {
  return {
    postinst: script(
      `${PACKAGE_NAME} postinst "$@"`,
      `
case "$1" in
  configure)
    # $2 is the version configured before (empty on a first install).
    if [ -n "\${2:-}" ]; then oc_after_install upgrade; else oc_after_install install; fi
    ;;
  abort-upgrade|abort-remove|abort-deconfigure)
    oc_after_install upgrade
    ;;
esac`,
    ),
    prerm: script(
      `${PACKAGE_NAME} prerm "$@"`,
      `
case "$1" in
  remove|deconfigure)
    oc_before_remove
    # dpkg -P / apt-get purge mark the package "purge" before running prerm: the only moment
    # the binary is still there to tell the platform.
    if [ "$(dpkg-query -W -f='\${db:Status-Want}' ${PACKAGE_NAME} 2>/dev/null || true)" = purge ]; then
      oc_unenroll
    fi
    ;;
  upgrade|failed-upgrade)
    # Keep running: the new postinst restarts the service once.
    ;;
esac`,
    ),
    postrm: script(
      `${PACKAGE_NAME} postrm "$@"`,
      `
case "$1" in
  remove)
    oc_daemon_reload
    ;;
  purge)
    oc_purge
    oc_daemon_reload
    ;;
esac`,
    ),
  };
}

/** The .rpm's scriptlets, by spec section; `$1` counts the versions installed after the step. */
export function rpmScriptlets(): Record<"post" | "preun" | "postun", string> {
  const body = (text: string) => `${functionsFor(text)}\n\n${text.trim()}\nexit 0\n`;
  return {
    // $1: 1 = first install, 2 = upgrade (the new package's %post runs before the old one leaves).
    post: body(
      `if [ "$1" -gt 1 ]; then oc_after_install upgrade; else oc_after_install install; fi`,
    ),
    // $1: 0 = erase, 1 = the old package's half of an upgrade (do nothing).
    preun: body(`
if [ "$1" -eq 0 ]; then
  oc_before_remove
  if [ "\${ONECONNECT_PURGE:-}" = 1 ]; then oc_unenroll; fi
fi`),
    postun: body(`
if [ "$1" -eq 0 ]; then
  if [ "\${ONECONNECT_PURGE:-}" = 1 ]; then oc_purge; fi
  oc_daemon_reload
fi`),
  };
}
