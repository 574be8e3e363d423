#!/usr/bin/env bash
# Builds tests/subproject/consumer against this source tree as a Meson subproject, in a
# fresh temporary directory, runs it and checks its output.
#
# Usage: check.sh <greenfiber source root> <consumer dir> [meson] [ninja]
#
# The consumer is configured plainly (buildtype plain), apart from asking for static
# libraries: no options, flags or sanitizers of the outer build reach it, so the test means
# the same in every outer configuration.
set -euo pipefail

src=$(cd "$1" && pwd -P)
consumer=$(cd "$2" && pwd -P)
meson=${3:-meson}
ninja=${4:-ninja}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/greenfiber-subproject.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Nothing from the outer build's environment may change how the consumer is built.
unset CPPFLAGS CFLAGS CXXFLAGS LDFLAGS CC CXX PKG_CONFIG_PATH MESON_BUILD_ROOT MESON_SOURCE_ROOT

cp -R "$consumer" "$tmp/consumer"
mkdir -p "$tmp/consumer/subprojects"
# A subproject directory with no wrap file: Meson's implicit fallback for
# dependency('greenfiber') uses it. It is a link to the source tree, so the test always
# builds the current sources; Meson never writes into a subproject's source directory.
ln -s "$src" "$tmp/consumer/subprojects/greenfiber"

# Static libraries here (the build's static option), shared ones in the install test: both
# kinds are built and used on every run. A plain build type (no -O, no -g): what this test
# proves does not depend on the flags, and it is the longest test of the check.
echo "== meson setup"
"$meson" setup --wrap-mode=nodownload -Ddefault_library=static -Dbuildtype=plain "$tmp/build" "$tmp/consumer"

echo "== ninja"
"$ninja" -C "$tmp/build"

# The dependency must have come from the subproject (not from an installed copy), and a
# subproject build must not configure greenfiber's tests or samples.
"$meson" introspect --projectinfo "$tmp/build" >"$tmp/projectinfo.json"
if ! grep -q '"name": "greenfiber"' "$tmp/projectinfo.json"; then
    echo "FAIL: greenfiber was not built as a subproject" >&2
    cat "$tmp/projectinfo.json" >&2
    exit 1
fi
"$meson" introspect --targets "$tmp/build" >"$tmp/targets.json"
if grep -Eq '"name": "[^"]*(_test|greenlet_switch)"' "$tmp/targets.json"; then
    echo "FAIL: greenfiber configured its tests or samples as a subproject" >&2
    exit 1
fi

# Static: nothing of greenfiber is loaded at run time.
if ldd "$tmp/build/consumer" | grep -q greenfiber; then
    echo "FAIL: the consumer loads a greenfiber shared library in a static build" >&2
    exit 1
fi

echo "== run"
expected='consumer: ping0 pong1 ping2 pong3 -> 4'
actual=$("$tmp/build/consumer")
echo "$actual"
if [[ "$actual" != "$expected" ]]; then
    echo "FAIL: expected: $expected" >&2
    exit 1
fi
echo "subproject: OK"
