#!/usr/bin/env python3
"""Runs asan_proof in one mode and checks the sanitizer's verdict.

Usage: expect_asan.py <asan_proof> clean <mode>
       expect_asan.py <asan_proof> report <mode> <pattern>...

clean:  the program must exit 0 and write nothing to stderr (no sanitizer report).
report: the program must fail with an AddressSanitizer report on stderr in which every
        <pattern> (a Python regular expression) is found (should_fail alone would also
        accept an unrelated crash).
"""

import re
import subprocess
import sys

TIMEOUT_SECONDS = 120


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] not in ("clean", "report") or \
            (sys.argv[2] == "report") != (len(sys.argv) > 4):
        print(__doc__, file=sys.stderr)
        return 2
    exe, verdict, mode = sys.argv[1:4]
    proc = subprocess.run([exe, mode], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=TIMEOUT_SECONDS, check=False)
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    print(f"$ {exe} {mode}  -> exit status {proc.returncode}")
    sys.stdout.write(stdout)
    if stderr:
        print("--- stderr ---")
        sys.stdout.write(stderr)

    if verdict == "clean":
        if proc.returncode != 0:
            print(f"FAIL: {mode}: exit status {proc.returncode}, expected 0")
            return 1
        if stderr:
            print(f"FAIL: {mode}: unexpected output on stderr (a sanitizer report?)")
            return 1
    else:
        if proc.returncode == 0:
            print(f"FAIL: {mode}: exited 0; the sanitizer did not stop it")
            return 1
        if "ERROR: AddressSanitizer" not in stderr:
            print(f"FAIL: {mode}: no AddressSanitizer report on stderr")
            return 1
        for pattern in sys.argv[4:]:
            if not re.search(pattern, stderr):
                print(f"FAIL: {mode}: the AddressSanitizer report does not match {pattern!r}")
                return 1
    print(f"OK: {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
