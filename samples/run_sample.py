#!/usr/bin/env python3
"""Runs one sample program and compares its stdout with the expected output.

Usage: run_sample.py <exe> <expected.out> [--allow-stderr]

Fails (exit 1) when the program exits non-zero, runs longer than the timeout, writes
anything to stderr (unless --allow-stderr), or prints something other than the expected
output; a mismatch is shown as a unified diff of expected against actual.
"""

import argparse
import difflib
import subprocess
import sys

TIMEOUT_SECONDS = 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exe", help="the sample program")
    parser.add_argument("expected", help="file holding the expected stdout")
    parser.add_argument("--allow-stderr", action="store_true",
                        help="do not fail when the program writes to stderr")
    args = parser.parse_args()

    with open(args.expected, encoding="utf-8") as f:
        expected = f.read()

    try:
        proc = subprocess.run([args.exe], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as e:
        print(f"FAIL: {args.exe} did not finish within {TIMEOUT_SECONDS} s", file=sys.stderr)
        for name, data in (("stdout", e.stdout), ("stderr", e.stderr)):
            if data:
                print(f"--- {name} so far ---", file=sys.stderr)
                print(data.decode("utf-8", "replace"), file=sys.stderr)
        return 1

    actual = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    failures = []

    if proc.returncode < 0:
        failures.append(f"killed by signal {-proc.returncode}")
    elif proc.returncode != 0:
        failures.append(f"exit status {proc.returncode}")
    if stderr and not args.allow_stderr:
        failures.append("unexpected output on stderr")
    if actual != expected:
        failures.append("stdout differs from " + args.expected)

    # Always echo what the program wrote, so the test log shows the run.
    sys.stdout.write(actual)
    sys.stdout.flush()
    if stderr:
        sys.stderr.write(stderr)

    if not failures:
        return 0

    print(f"FAIL: {args.exe}: " + "; ".join(failures), file=sys.stderr)
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(keepends=True),
                                    actual.splitlines(keepends=True),
                                    fromfile=args.expected, tofile="actual stdout")
        for line in diff:
            sys.stderr.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
