#!/usr/bin/env python3
"""Proves that each public header of greenfiber compiles on its own.

The test programs are compiled with a precompiled header of GoogleTest, the standard
library and Asio (tests/pch/), so a public header that forgot one of those includes would
still compile inside them. This check compiles a one-line file per public header,
`#include <greenfiber/NAME.hpp>` and nothing else, with no precompiled header and warnings
as errors, and fails naming every header that does not compile alone.

usage: headers_alone.py --header-dir DIR [--header-dir DIR ...] -- COMPILER [ARGS ...]

Every `*.hpp` directly in each DIR (a layer's include/greenfiber/) is checked, so a new
header is covered without editing anything; detail/ headers are not public and are left out.
"""

import argparse
import concurrent.futures
import pathlib
import subprocess
import sys


def check(header, compiler):
    source = f"#include <greenfiber/{header.name}>\n"
    proc = subprocess.run(compiler + ["-fsyntax-only", "-x", "c++", "-"],
                          input=source, capture_output=True, text=True, timeout=120)
    return header, proc.returncode, proc.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header-dir", action="append", required=True, type=pathlib.Path)
    parser.add_argument("compiler", nargs="+", help="compiler and its arguments, after --")
    args = parser.parse_args()

    headers = sorted(h for d in args.header_dir for h in d.glob("*.hpp"))
    if not headers:
        print("headers_alone: no headers found in " +
              ", ".join(str(d) for d in args.header_dir), file=sys.stderr)
        return 1
    failed = []
    # Two at a time: each compile is single-threaded and mostly parses Asio.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for header, rc, err in pool.map(lambda h: check(h, args.compiler), headers):
            status = "ok" if rc == 0 else "FAILED"
            print(f"greenfiber/{header.name}: {status}")
            if rc != 0:
                failed.append(header.name)
                print(err, file=sys.stderr)
    if failed:
        print("headers_alone: these headers do not compile on their own: " +
              ", ".join(failed), file=sys.stderr)
        return 1
    print(f"headers_alone: {len(headers)} public headers compile on their own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
