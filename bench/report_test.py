"""Checks report.py's tables and verdicts on made-up RESULT lines: each target's verdict
on both sides of its bound, several processes of one row merged to their median, a peer
that is missing or failed, a row without an optional field, and a failed checksum. Run by
the suite 'bench' (bench/meson.build): `python3 bench/report_test.py bench/report.py`.
"""

import os
import subprocess
import sys
import tempfile


def report(script, lines):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        out = subprocess.run([sys.executable, script, path], check=True, capture_output=True,
                             text=True).stdout
    finally:
        os.unlink(path)
    return out


def row(out, start):
    """The one ratio row whose first cell starts with `start`."""
    hits = [l for l in out.splitlines() if l.startswith("| " + start)]
    assert len(hits) == 1, f"expected one row starting {start!r}, got {hits}\n{out}"
    return [c.strip() for c in hits[0].strip("|").split("|")]


def timed(name, impl, value, **extra):
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    return f"RESULT name={name} impl={impl} value={value} unit=ns min={value} max={value} runs=5 {fields}"


def mem(impl, value, n, **extra):
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    return f"RESULT name=mem_parked impl={impl} value={value} unit=bytes vmsize=1 n={n} {fields}"


def main(script):
    failures = []

    def check(what, cond, out):
        if not cond:
            failures.append(f"{what}\n{out}")

    # Every target met, from greenfiber's side of each bound.
    met = report(script, [
        timed("switch", "greenfiber_hub_yield", 30), timed("switch", "boost_fiber_yield", 100),
        timed("switch", "gevent_sleep0", 3000), timed("switch", "asyncio_sleep0", 3000),
        timed("spawn_join", "greenfiber_task_spawn_get", 150),
        timed("spawn_join", "go_goroutine_waitgroup", 200),
        timed("spawn_join", "boost_fiber_pooled_stack", 300),
        timed("timers", "greenfiber_task_sleep", 2000, cpu_ns_per_timer=1000),
        timed("timers", "go_time_sleep", 3000, cpu_ns_per_timer=3000),
        timed("timers", "boost_fiber_sleep_for_pooled_stack", 2000, cpu_ns_per_timer=2000),
        mem("greenfiber_task_event", 4000, 100000, check="ok"), mem("go_goroutine", 2700, 100000),
        mem("asyncio_task", 1200, 100000), mem("gevent", 8500, 100000),
    ])
    r = row(met, "yield: greenfiber_hub_yield / boost_fiber_yield")
    check("yield at 0.30x meets the 3x target", r[3] == "0.30×" and r[5] == "met", met)
    r = row(met, "spawn+get: greenfiber_task_spawn_get / go_goroutine_waitgroup")
    check("spawn+get at 0.75x Go is met", r[3] == "0.75×" and r[5] == "met", met)
    r = row(met, "timers: greenfiber_task_sleep / boost_fiber_sleep_for_pooled_stack")
    check("timers equal to Boost.Fiber meet <= 1.0x", r[3] == "1.00×" and r[5] == "met", met)
    r = row(met, "mem_parked at N=100,000: greenfiber_task_event / go_goroutine")
    check("4000 / 2700 = 1.48x is within 1.6x", r[3] == "1.48×" and r[5] == "met", met)
    r = row(met, "timers, CPU ns per timer: greenfiber_task_sleep / go_time_sleep")
    check("CPU per timer comes from the extra field", r[1] == "1,000" and r[3] == "0.33×", met)
    r = row(met, "100,000 parked tasks fit")
    check("a passed checksum is met", r[5] == "met", met)
    for peer in ("gevent_sleep0", "asyncio_sleep0"):
        r = row(met, f"yield: greenfiber_hub_yield / {peer}")
        check(f"the ratio to {peer} carries no verdict", r[3] == "0.01×" and r[5] == "—", met)

    # Every target missed, just past its bound; three processes of one row merge to their
    # median; a peer that failed is echoed and its ratio is "not measured".
    missed = report(script, [
        timed("switch", "greenfiber_hub_yield", 34), timed("switch", "boost_fiber_yield", 100),
        timed("spawn_join", "greenfiber_task_spawn_get", 900),
        timed("spawn_join", "greenfiber_task_spawn_get", 200),
        timed("spawn_join", "greenfiber_task_spawn_get", 250),
        timed("spawn_join", "go_goroutine_waitgroup", 200),
        timed("timers", "greenfiber_task_sleep", 2001),
        timed("timers", "boost_fiber_sleep_for_pooled_stack", 2000),
        "FAILED cmd=/tmp/gobench\\ timers\\ 100000\\ 5",
        mem("greenfiber_task_event", 4400, 100000, check="FAILED"),
        mem("go_goroutine", 2700, 100000),
    ])
    r = row(missed, "yield: greenfiber_hub_yield / boost_fiber_yield")
    check("yield at 0.34x misses the 3x target", r[5] == "**missed**", missed)
    r = row(missed, "spawn+get: greenfiber_task_spawn_get / go_goroutine_waitgroup")
    check("the median of 900, 200, 250 is 250: 1.25x, missed",
          r[1] == "250" and r[3] == "1.25×" and r[5] == "**missed**", missed)
    r = row(missed, "timers: greenfiber_task_sleep / boost_fiber_sleep_for_pooled_stack")
    check("timers 1.0005x Boost.Fiber miss <= 1.0x", r[5] == "**missed**", missed)
    r = row(missed, "timers: greenfiber_task_sleep / go_time_sleep")
    check("a failed peer is not measured", r[3] == "?" and r[5] == "not measured", missed)
    r = row(missed, "timers, CPU ns per timer: greenfiber_task_sleep / go_time_sleep")
    check("a row without cpu_ns_per_timer is not measured", r[5] == "not measured", missed)
    r = row(missed, "mem_parked at N=100,000: greenfiber_task_event / go_goroutine")
    check("4400 / 2700 = 1.63x misses 1.6x", r[3] == "1.63×" and r[5] == "**missed**", missed)
    r = row(missed, "100,000 parked tasks fit")
    check("a failed checksum is missed", r[5] == "**missed**", missed)
    check("the FAILED line is shown", "FAILED cmd=/tmp/gobench" in missed, missed)
    check("the processes are counted", "processes=3" in missed, missed)

    # Only greenfiber's rows (the peers not installed): every ratio row says so, none fails.
    alone = report(script, [timed("switch", "greenfiber_hub_yield", 30)])
    r = row(alone, "yield: greenfiber_hub_yield / boost_fiber_yield")
    check("a missing peer is not measured", r[5] == "not measured", alone)

    if failures:
        print("\n\n".join(failures))
        return 1
    print("report.py: every verdict as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
