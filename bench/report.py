"""Turns the RESULT lines that bench/run collected into two Markdown tables: every
figure, and greenfiber's ratios to its peers against the targets.

A (name, impl) pair seen once keeps the median/min/max its program computed (runs inside
the process); seen in several processes, the table shows the median of those processes'
values and their range. Memory rows are kept apart by N.
"""

import re
import statistics
import sys

FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')
CORE = ("name", "impl", "value", "unit", "min", "max")


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(x):
    if x is None:
        return "?"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def merge_extra(values):
    if len(set(values)) == 1:
        return values[0]
    nums = [num(v) for v in values]
    if all(n is not None for n in nums):
        return f"{fmt(statistics.median(nums))}[{fmt(min(nums))}–{fmt(max(nums))}]".replace(",", "")
    tally = {}
    for v in values:
        tally[v] = tally.get(v, 0) + 1
    return "/".join(f"{v}×{c}" for v, c in tally.items())


def key_of(fields):
    if fields["name"] == "mem_parked":
        return (fields["name"], fields["impl"], int(fields["n"]))
    return (fields["name"], fields["impl"], None)


def load(path):
    groups, failed = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("FAILED"):
                failed.append(line.strip())
            elif line.startswith("RESULT "):
                fields = dict((k, v.strip('"')) for k, v in FIELD.findall(line))
                groups.setdefault(key_of(fields), []).append(fields)
    return groups, failed


def figure(rows):
    """(median, min, max) over the rows of one (name, impl[, n])."""
    values = [num(r["value"]) for r in rows]
    if len(rows) == 1:
        r = rows[0]
        return values[0], num(r.get("min", r["value"])), num(r.get("max", r["value"]))
    return statistics.median(values), min(values), max(values)


def main(path):
    groups, failed = load(path)
    print("| benchmark | implementation | median | min–max | unit | details |")
    print("|---|---|---:|---:|---|---|")
    for (name, impl, _), rows in groups.items():
        med, lo, hi = figure(rows)
        keys = [k for k in rows[0] if k not in CORE]
        details = [f"{k}={merge_extra([r.get(k, '') for r in rows])}" for k in keys]
        if len(rows) > 1:
            details.insert(0, f"processes={len(rows)}")
        print(f"| {name} | {impl} | {fmt(med)} | {fmt(lo)}–{fmt(hi)} | {rows[0]['unit']} | "
              f"{' '.join(details)} |")

    def get(name, impl, n=None):
        rows = groups.get((name, impl, n))
        return (figure(rows)[0], rows) if rows else (None, None)

    def get_field(name, impl, field):
        """The median over processes of an extra field (e.g. timers' cpu_ns_per_timer)."""
        rows = groups.get((name, impl, None))
        vals = [num(r.get(field)) for r in rows or []]
        vals = [v for v in vals if v is not None]
        return (statistics.median(vals), rows) if vals else (None, None)

    lines = []

    def ratio(what, ours, ref, target, ok=None, aim=None):
        a, _ = ours
        b, _ = ref
        if a is None or b is None:
            lines.append(f"| {what} | {fmt(a)} | {fmt(b)} | ? | {target} | not measured |")
            return
        r = a / b
        verdict = "—" if ok is None else "met" if ok(r) else "**missed**"
        if aim is not None and ok(r) and r > aim:
            verdict += f" (aim ≤ {aim}× not reached)"
        lines.append(f"| {what} | {fmt(a)} | {fmt(b)} | {r:.2f}× | {target} | {verdict} |")

    ratio("switch: greenfiber_greenlet / boost_context_fiber (ns per switch)",
          get("switch", "greenfiber_greenlet"), get("switch", "boost_context_fiber"),
          "≤ 1.5× (aim 1.2×)", lambda r: r <= 1.5, aim=1.2)
    ratio("switch instructions (callgrind): greenfiber / boost_context_fiber",
          get("switch_instructions", "greenfiber_greenlet"),
          get("switch_instructions", "boost_context_fiber"), "(no target: explains the above)")
    ratio("spawn+join: greenfiber_greenlet_pooled / go_goroutine_waitgroup (ns per task)",
          get("spawn_join", "greenfiber_greenlet_pooled"), get("spawn_join", "go_goroutine_waitgroup"),
          "< 1.0×", lambda r: r < 1.0)
    # The hub's rows (issue 17), each against every peer the issue names; a target where
    # the issue sets one, "—" where the ratio is context.
    yield_ = get("switch", "greenfiber_hub_yield")
    ratio("yield: greenfiber_hub_yield / boost_fiber_yield (ns per yield)", yield_,
          get("switch", "boost_fiber_yield"), "≤ 0.33× (≥ 3× faster)", lambda r: r <= 1 / 3)
    ratio("yield: greenfiber_hub_yield / gevent_sleep0", yield_, get("switch", "gevent_sleep0"),
          "(no target)")
    ratio("yield: greenfiber_hub_yield / asyncio_sleep0", yield_, get("switch", "asyncio_sleep0"),
          "(no target)")
    ratio("yield: greenfiber_hub_yield / greenfiber_greenlet (a bare switch)", yield_,
          get("switch", "greenfiber_greenlet"), "(no target: a direct hand-off is one switch a yield, ≈ 1×)")
    ratio("yield instructions (callgrind): greenfiber_hub_yield / boost_fiber_yield",
          get("switch_instructions", "greenfiber_hub_yield"),
          get("switch_instructions", "boost_fiber_yield"), "(no target: explains the above)")
    task = get("spawn_join", "greenfiber_task_spawn_get")
    ratio("spawn+get: greenfiber_task_spawn_get / go_goroutine_waitgroup (ns per task)", task,
          get("spawn_join", "go_goroutine_waitgroup"), "< 1.0×", lambda r: r < 1.0)
    ratio("spawn+get: greenfiber_task_spawn_get / boost_fiber_pooled_stack", task,
          get("spawn_join", "boost_fiber_pooled_stack"), "(no target)")
    ratio("spawn+get instructions (callgrind): greenfiber_task_spawn_get / "
          "boost_fiber_pooled_stack", get("spawn_instructions", "greenfiber_task_spawn_get"),
          get("spawn_instructions", "boost_fiber_pooled_stack"), "(no target: explains the above)")
    timers = get("timers", "greenfiber_task_sleep")
    ratio("timers: greenfiber_task_sleep / go_time_sleep ((wall − longest sleep) / N)", timers,
          get("timers", "go_time_sleep"), "< 1.0×", lambda r: r < 1.0)
    ratio("timers: greenfiber_task_sleep / boost_fiber_sleep_for_pooled_stack", timers,
          get("timers", "boost_fiber_sleep_for_pooled_stack"), "≤ 1.0×", lambda r: r <= 1.0)
    for impl in ("asyncio_sleep", "uvloop_sleep", "gevent_sleep"):
        ratio(f"timers: greenfiber_task_sleep / {impl}", timers, get("timers", impl), "(no target)")
    cpu = get_field("timers", "greenfiber_task_sleep", "cpu_ns_per_timer")
    for impl in ("go_time_sleep", "boost_fiber_sleep_for_pooled_stack"):
        ratio(f"timers, CPU ns per timer: greenfiber_task_sleep / {impl}", cpu,
              get_field("timers", impl, "cpu_ns_per_timer"), "(no target: the CPU side of it)")
    ns = sorted({k[2] for k in groups if k[0] == "mem_parked" and k[2] is not None})
    for n in ns:
        ratio(f"mem_parked at N={n:,}: greenfiber_greenlet / go_goroutine (VmRSS bytes each)",
              get("mem_parked", "greenfiber_greenlet", n), get("mem_parked", "go_goroutine", n),
              "≤ 1.6×", lambda r: r <= 1.6)
    for n in ns:
        ours = get("mem_parked", "greenfiber_task_event", n)
        if ours[0] is None:
            continue
        ratio(f"mem_parked at N={n:,}: greenfiber_task_event / go_goroutine (VmRSS bytes each)",
              ours, get("mem_parked", "go_goroutine", n), "≤ 1.6×", lambda r: r <= 1.6)
        for impl in ("asyncio_task", "gevent"):
            ratio(f"mem_parked at N={n:,}: greenfiber_task_event / {impl}", ours,
                  get("mem_parked", impl, n), "(no target)")
    # The opt-in small stacks (stack.hpp, "Small stacks"), at each size run.
    smalls = sorted({k[1] for k in groups
                     if k[0] == "mem_parked" and "_small" in k[1] and k[1].startswith("greenfiber_")})
    for impl in smalls:
        for n in ns:
            ours = get("mem_parked", impl, n)
            if ours[0] is None:
                continue
            ratio(f"mem_parked at N={n:,}: {impl} / go_goroutine (VmRSS bytes each)", ours,
                  get("mem_parked", "go_goroutine", n), "< 1.0× (opt-in small mode)",
                  lambda r: r < 1.0)
            if impl.startswith("greenfiber_task_event"):
                ratio(f"mem_parked at N={n:,}: {impl} / asyncio_task", ours,
                      get("mem_parked", "asyncio_task", n), "(no target: toward asyncio)")
    for impl, what in ([("greenfiber_greenlet", "greenlets"), ("greenfiber_task_event", "tasks")] +
                       [(s, "small-stack " + ("tasks" if "task" in s else "greenlets"))
                        for s in smalls]):
        for n in ns:
            _, rows = get("mem_parked", impl, n)
            if rows:
                ok = all(r.get("check") == "ok" for r in rows)
                lines.append(f"| {n:,} parked {what} fit, resume and finish (checksum) | "
                             f"{len(rows)} process(es) | | | all ok | "
                             f"{'met' if ok else '**missed**'} |")
    if lines:
        print()
        print("| ratio (same run) | greenfiber | reference | ratio | target | verdict |")
        print("|---|---:|---:|---:|---|---|")
        print("\n".join(lines))
    for line in failed:
        print(f"\n{line}")


if __name__ == "__main__":
    main(sys.argv[1])
