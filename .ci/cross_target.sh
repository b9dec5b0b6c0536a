#!/usr/bin/env bash
# Cross-target stage (issue 32, docs/cross_targets.md): the agent on two release targets this
# amd64 Linux machine can execute.
#
#   arm64  npm's @deno/linux-arm64-glibc under qemu-user (binfmt_misc): the CLI end to end
#          (enroll, run --once, status, --version, inventory) against the dev platform running
#          natively, then the tests of the platform-tool parsers run by the arm64 Deno itself.
#   wine   npm's @deno/win32-x64 under Wine 8 with the two workarounds docs/cross_targets.md
#          explains: the agent's --version and inventory (Wine's real reg.exe).
#
#   .ci/cross_target.sh OUTDIR [arm64] [wine]   (both stages when none is named)
#
# Each `deno test` run writes OUTDIR/NN-name.log and OUTDIR/NN-name.status (its exit status) for
# .ci/run's summary; a setup failure writes a log without a test summary, which counts as a
# failure. Bash rather than a Deno task: most of the work is root's (multiarch apt, binfmt_misc
# registration and its removal), next to the installs of .ci/run. What it registers or mounts it
# removes on exit; it stops no process (Wine's wineserver, which the stage starts, is waited for).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
shift
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(arm64 wine)
mkdir -p "$out"

DENO_VERSION="$(cat .deno-version)"
export NO_COLOR=1 DEBIAN_FRONTEND=noninteractive
cache="${ONECONNECT_CROSS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/oneconnect-cross}"
mkdir -p "$cache"
work="$(mktemp -d)"
cleanup=("rm -rf '$work'")
on_exit() {
  local i
  for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[$i]}" || true; done
}
trap on_exit EXIT

native_deno() { npx --yes "deno@${DENO_VERSION}" "$@"; }
run_number=0
# record NAME COMMAND...: runs a `deno test` command, keeping its output and exit status.
record() {
  local name="$1" status=0
  shift
  run_number=$((run_number + 1))
  local base
  base="$out/$(printf '%02d' "$run_number")-$name"
  echo "== cross-target: $name" >&2
  "$@" >"$base.log" 2>&1 || status=$?
  echo "$status" >"$base.status"
  tail -n 3 "$base.log" >&2
}
# setup_failed NAME MESSAGE: a stage that could not start fails CI (no test summary in its log).
setup_failed() {
  run_number=$((run_number + 1))
  local base
  base="$out/$(printf '%02d' "$run_number")-$1-setup"
  echo "cross-target $1: $2" | tee "$base.log" >&2
  echo 1 >"$base.status"
}
apt_install() {
  [ "$(id -u)" = "0" ] || return 1
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# npm_binary PACKAGE FILE: the file of an npm package (version DENO_VERSION), unpacked once into the
# cache; npm checks the tarball against the registry's integrity hash.
npm_binary() {
  local dir="$cache/${1//\//+}-$DENO_VERSION"
  if [ ! -e "$dir/package/$2" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$1@$DENO_VERSION" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
  fi
  echo "$dir/package/$2"
}

# The bundle the main suite tested (re-made here so that the stage also runs on its own).
native_deno task --quiet bundle
entry=dist/bundle/main.js

stage_arm64() {
  local binfmt=/proc/sys/fs/binfmt_misc magic=7f454c460201010000000000000000000200b700 deno
  # The arm64 C library through multiarch, not a cross prefix: qemu-user finds it at the paths
  # the ELF names, also for children started with a cleared environment (no QEMU_LD_PREFIX).
  if [ ! -e /lib/ld-linux-aarch64.so.1 ] || [ ! -e /lib/aarch64-linux-gnu/libgcc_s.so.1 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      [ "$(id -u)" = "0" ] && dpkg --add-architecture arm64
    fi
    apt_install libc6:arm64 libgcc-s1:arm64 ||
      { setup_failed arm64 "cannot install libc6:arm64 libgcc-s1:arm64 (multiarch; needs root)"; return; }
  fi
  [ -x /usr/bin/qemu-aarch64-static ] || apt_install qemu-user-static ||
    { setup_failed arm64 "cannot install qemu-user-static"; return; }
  deno="$(npm_binary @deno/linux-arm64-glibc deno)" ||
    { setup_failed arm64 "cannot fetch @deno/linux-arm64-glibc@$DENO_VERSION from npm"; return; }

  # binfmt_misc: mounted and qemu-aarch64 registered (F: the interpreter is opened now, so it works
  # in any mount namespace), each only when missing, and undone on exit.
  if [ ! -e "$binfmt/status" ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt" ||
      { setup_failed arm64 "cannot mount binfmt_misc (needs root)"; return; }
    cleanup+=("umount '$binfmt'")
  fi
  if ! grep -qsx "magic $magic" "$binfmt"/*; then
    printf '%s' ":oneconnect-qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:F" \
      >"$binfmt/register" ||
      { setup_failed arm64 "cannot register qemu-aarch64 with binfmt_misc"; return; }
    cleanup+=("echo -1 >'$binfmt/oneconnect-qemu-aarch64'")
  fi
  if [ "$("$deno" eval --quiet 'console.log(Deno.build.arch)' 2>&1)" != "aarch64" ]; then
    setup_failed arm64 "npm's arm64 Deno does not run under qemu-user"
    return
  fi

  # The CLI end to end: the tests and the platform run natively, every agent process on arm64.
  record arm64-agent-e2e env ONECONNECT_AGENT_DENO="$deno" ONECONNECT_EXPECT_AGENT_ARCH=aarch64 \
    ONECONNECT_TEST_ENTRY="$entry" npx --yes "deno@${DENO_VERSION}" test --allow-all \
    tests/cross_target_smoke_test.ts
  # The parsers of platform tools' outputs (recorded fixtures) and the collectors that run them,
  # run by the arm64 Deno itself; --no-check: the main suite type-checked these files natively,
  # and the TypeScript checker under emulation would take minutes.
  record arm64-parsers env ONECONNECT_TEST_ENTRY="$entry" "$deno" test --no-check --allow-all \
    tests/hardware_test.ts tests/reg_query_test.ts tests/telemetry_test.ts \
    tests/filesystems_test.ts tests/network_counters_test.ts tests/cpu_usage_test.ts \
    tests/windows_acl_test.ts tests/os_proxy_test.ts
}

stage_wine() {
  local wine=/usr/lib/wine/wine64 deno dll prefix="$work/wineprefix" wrapper="$work/deno-wine"
  if [ ! -x "$wine" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    apt_install wine wine64 gcc-mingw-w64-x86-64 ||
      { setup_failed wine "cannot install wine, wine64, gcc-mingw-w64-x86-64"; return; }
  fi
  deno="$(npm_binary @deno/win32-x64 deno.exe)" ||
    { setup_failed wine "cannot fetch @deno/win32-x64@$DENO_VERSION from npm"; return; }
  # The stand-in DLL goes next to a copy of deno.exe (Windows loads DLLs from the program's
  # directory first); the cached package stays as npm shipped it.
  mkdir -p "$work/deno-win"
  cp "$deno" "$work/deno-win/deno.exe"
  dll="$work/deno-win/bcryptprimitives.dll"
  x86_64-w64-mingw32-gcc -O2 -Wall -shared -o "$dll" .ci/wine/bcryptprimitives.c \
    .ci/wine/bcryptprimitives.def -lbcrypt ||
    { setup_failed wine "cannot build the bcryptprimitives.dll stand-in"; return; }
  printf '#!/bin/sh\nWINEPREFIX=%s WINEDEBUG=-all exec %s %s "$@"\n' "$prefix" "$wine" \
    "$work/deno-win/deno.exe" >"$wrapper"
  chmod 755 "$wrapper"
  # A prefix of our own; its wineserver exits by itself once the last Wine process has.
  cleanup+=("WINEPREFIX='$prefix' /usr/lib/wine/wineserver64 -w")
  # The first run creates the prefix (about 20 s, with notes on stderr).
  if [ "$("$wrapper" eval --quiet 'console.log(Deno.build.os)' 2>"$work/wine-first.err" |
    tr -d '\r')" != "windows" ]; then
    setup_failed wine "npm's deno.exe does not start under Wine (see docs/cross_targets.md): $(
      tail -n 5 "$work/wine-first.err"
    )"
    return
  fi
  record wine-agent-smoke env ONECONNECT_AGENT_DENO="$wrapper" ONECONNECT_EXPECT_AGENT_OS=windows \
    ONECONNECT_EXPECT_AGENT_ARCH=x86_64 ONECONNECT_TEST_ENTRY="$entry" \
    npx --yes "deno@${DENO_VERSION}" test --allow-all \
    --filter "cross-target: agent --version and inventory" tests/cross_target_smoke_test.ts
}

for stage in "${stages[@]}"; do
  start=$SECONDS
  "stage_$stage"
  echo "cross-target $stage: $((SECONDS - start)) s" >&2
done
