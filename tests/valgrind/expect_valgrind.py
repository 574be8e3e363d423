#!/usr/bin/env python3
"""Runs valgrind_program under Valgrind's memcheck and checks memcheck's verdict.

Usage: expect_valgrind.py <valgrind> <valgrind_program> clean|unregistered|stale|gap

clean:        the program's `clean` mode (switches, generators, killed greenlets, pooled
              stacks reused, sleeping and cancelled tasks, a TCP round trip on loopback)
              must run to the end with no memcheck error, no definite leak and no "client
              switching stacks?" warning.
unregistered: the same run with GREENFIBER_VALGRIND_STACKS=0, so the library tells
              memcheck nothing about its stacks: memcheck must report errors and warn
              "client switching stacks?". This proves the clean run's verdict means
              something: the same program, unregistered, is not clean.
stale:        the program reads a local of a greenlet that has died, whose stack is back in
              the pool: memcheck must report an invalid read in stale_read().
gap:          the program writes through a stray pointer into the unused gap below an
              unguarded stack: memcheck must report an invalid write in gap_write().

Every run is bounded (TIMEOUT_SECONDS) and prints Valgrind's whole output.
"""

import os
import re
import subprocess
import sys

TIMEOUT_SECONDS = 90
ERROR_EXIT = 99
VALGRIND_ARGS = [
    "--tool=memcheck",
    f"--error-exitcode={ERROR_EXIT}",
    "--leak-check=full",
    "--show-leak-kinds=definite",
    "--errors-for-leak-kinds=definite",
    "--num-callers=30",
]
SWITCH_WARNING = "client switching stacks?"


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[3] not in ("clean", "unregistered", "stale", "gap"):
        print(__doc__, file=sys.stderr)
        return 2
    valgrind, program, verdict = sys.argv[1:4]
    mode = "clean" if verdict == "unregistered" else verdict
    env = dict(os.environ)
    env.pop("VALGRIND_OPTS", None)  # the verdict must not depend on the caller's settings
    env["LD_BIND_NOW"] = "1"  # the program's small stacks need it
    if verdict == "unregistered":
        env["GREENFIBER_VALGRIND_STACKS"] = "0"
    else:
        env.pop("GREENFIBER_VALGRIND_STACKS", None)
    cmd = [valgrind, *VALGRIND_ARGS, program, mode]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                              timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        print(f"FAIL: {verdict}: no result within {TIMEOUT_SECONDS} s")
        return 1
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    prefix = "GREENFIBER_VALGRIND_STACKS=0 " if verdict == "unregistered" else ""
    print(f"$ {prefix}{' '.join(cmd)}  -> exit status {proc.returncode}")
    sys.stdout.write(stdout)
    print("--- stderr (Valgrind's report) ---")
    sys.stdout.write(stderr)

    summary = re.search(r"ERROR SUMMARY: (\d+) errors", stderr)
    if summary is None:
        print(f"FAIL: {verdict}: no memcheck ERROR SUMMARY (did Valgrind run?)")
        return 1
    errors = int(summary.group(1))
    # The program must run to its end in every case: a verdict on a crashed run proves nothing.
    if f"valgrind_program: {mode} ok" not in stdout:
        print(f"FAIL: {verdict}: the program did not run to its end")
        return 1

    if verdict == "clean":
        if proc.returncode != 0 or errors != 0:
            print(f"FAIL: clean: {errors} memcheck errors, exit status {proc.returncode}")
            return 1
        if SWITCH_WARNING in stderr:
            print(f"FAIL: clean: memcheck warned '{SWITCH_WARNING}': a switch was not seen as one")
            return 1
    elif verdict == "unregistered":
        if proc.returncode != ERROR_EXIT or errors == 0:
            print(f"FAIL: unregistered: expected memcheck errors (exit status {ERROR_EXIT}); "
                  f"got {errors} errors, exit status {proc.returncode}")
            return 1
        if SWITCH_WARNING not in stderr:
            print(f"FAIL: unregistered: no '{SWITCH_WARNING}' warning")
            return 1
    else:
        if proc.returncode != ERROR_EXIT or errors == 0:
            print(f"FAIL: {verdict}: expected a memcheck error (exit status {ERROR_EXIT}); "
                  f"got {errors} errors, exit status {proc.returncode}")
            return 1
        kind, where = ("read", "stale_read") if verdict == "stale" else ("write", "gap_write")
        # memcheck's reports are separated by lines holding only the "==pid==" prefix.
        reports = re.split(r"^==\d+== *$", stderr, flags=re.MULTILINE)
        if not any(f"Invalid {kind} of size" in r and re.search(rf"\b{where}\b", r)
                   for r in reports):
            print(f"FAIL: {verdict}: no invalid {kind} reported in {where}()")
            return 1
    print(f"OK: {verdict} ({errors} memcheck errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
