#!/usr/bin/env bash
# Installs the outer build into a temporary prefix and uses it the three ways the README's
# "Install" section describes, running every program without LD_LIBRARY_PATH:
#   1. a CMake project: find_package(greenfiber 0.1) + greenfiber::greenfiber / ::fibers;
#   2. plain g++ with pkg-config (greenfiber.pc, greenfiber-fibers.pc);
#   3. a translation unit compiled without C++20 stops at one line saying so.
# Also checks the installed libraries' SONAME and that libgreenfiber finds its sibling.
#
# Usage: check.sh <build dir> <source dir of this test> <prefix> <libdir> <includedir>
#                 <soversion> <meson>
set -euo pipefail

build=$(cd "$1" && pwd -P)
here=$(cd "$2" && pwd -P)
prefix=$3 libdir=$4 includedir=$5 soversion=$6 meson=$7

tmp=$(mktemp -d "${TMPDIR:-/tmp}/greenfiber-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unset LD_LIBRARY_PATH CPPFLAGS CFLAGS CXXFLAGS LDFLAGS CC CXX PKG_CONFIG_PATH CMAKE_PREFIX_PATH

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

echo "== meson install into a temporary prefix"
"$meson" install -C "$build" --no-rebuild --skip-subprojects --quiet --destdir "$tmp/root"
inst=$tmp/root$prefix
lib=$inst/$libdir
[[ -f $inst/$includedir/greenfiber/config.hpp ]] || fail "greenfiber/config.hpp is not installed"
[[ ! -e $inst/$includedir/greenfiber/meson.build ]] || fail "build files installed as headers"

echo "== installed libraries"
for name in greenfiber greenfiber-fibers; do
    soname=$(readelf -d "$lib/lib$name.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [[ $soname == "lib$name.so.$soversion" ]] || fail "lib$name.so has SONAME '$soname'"
    [[ -e $lib/$soname ]] || fail "$soname is not installed"
done
readelf -d "$lib/libgreenfiber.so" | grep -q 'R.*PATH.*\[\$ORIGIN\]' ||
    fail "libgreenfiber.so cannot find libgreenfiber-fibers.so beside it (no \$ORIGIN runpath)"

expected_app="app $(sed -n 's/^#define GREENFIBER_VERSION_STRING "\(.*\)"/\1/p' \
    "$inst/$includedir/greenfiber/config.hpp"): 10 42"
expected_fibers='fibers_app: 2 dead'
check_run() {  # check_run <program> <expected output>
    local out
    out=$("$1") || fail "$1 exited with status $?"
    echo "$out"
    [[ $out == "$2" ]] || fail "$1 printed '$out', expected '$2'"
}

echo "== CMake consumer (find_package)"
cmake -S "$here" -B "$tmp/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$inst" \
    -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 || {
    cat "$tmp/cmake.log" >&2
    fail "cmake could not configure the consumer"
}
cmake --build "$tmp/cmake" || fail "the CMake consumer did not build"
check_run "$tmp/cmake/app" "$expected_app"
check_run "$tmp/cmake/fibers_app" "$expected_fibers"

echo "== pkg-config consumer (g++)"
export PKG_CONFIG_PATH=$lib/pkgconfig
pc() { pkg-config --define-variable=prefix="$inst" "$@"; }
grep -q '^Requires: greenfiber-fibers' "$lib/pkgconfig/greenfiber.pc" ||
    fail "greenfiber.pc does not require greenfiber-fibers.pc"
# shellcheck disable=SC2046 # pkg-config's output is a list of words
g++ -std=c++20 -O1 -o "$tmp/app_pc" "$here/app.cpp" $(pc --cflags --libs greenfiber) \
    -Wl,-rpath,"$lib" || fail "g++ with pkg-config greenfiber failed"
# shellcheck disable=SC2046
g++ -std=c++20 -O1 -o "$tmp/fibers_app_pc" "$here/fibers_app.cpp" \
    $(pc --cflags --libs greenfiber-fibers) -Wl,-rpath,"$lib" ||
    fail "g++ with pkg-config greenfiber-fibers failed"
check_run "$tmp/app_pc" "$expected_app"
check_run "$tmp/fibers_app_pc" "$expected_fibers"

echo "== without C++20: one line that says so"
for header in greenlet.hpp greenfiber.hpp; do
    printf '#include <greenfiber/%s>\nint main() {}\n' "$header" >"$tmp/old.cpp"
    if g++ -std=c++17 -fsyntax-only -I"$inst/$includedir" "$tmp/old.cpp" 2>"$tmp/old.log"; then
        fail "<greenfiber/$header> compiled as C++17"
    fi
    cat "$tmp/old.log"
    grep -q 'greenfiber needs C++20' "$tmp/old.log" || fail "no 'needs C++20' message for $header"
    errors=$(grep -c 'error' "$tmp/old.log" || true)
    [[ $errors -eq 1 ]] || fail "$errors error lines for <greenfiber/$header> in C++17, expected 1"
done

echo "install: OK"
