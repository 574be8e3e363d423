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
    ns = sorted({k[2] for k in groups if k[0] == "mem_parked" and k[2] is not None})
    for n in ns:
        ratio(f"mem_parked at N={n:,}: greenfiber_greenlet / go_goroutine (VmRSS bytes each)",
              get("mem_parked", "greenfiber_greenlet", n), get("mem_parked", "go_goroutine", n),
              "≤ 1.6×", lambda r: r <= 1.6)
    for n in ns:
        _, rows = get("mem_parked", "greenfiber_greenlet", n)
        if rows:
            ok = all(r.get("check") == "ok" for r in rows)
            lines.append(f"| {n:,} parked greenlets fit, resume and finish (checksum) | "
                         f"{len(rows)} process(es) | | | all ok | {'met' if ok else '**missed**'} |")
    if lines:
        print()
        print("| ratio (same run) | greenfiber | reference | ratio | target | verdict |")
        print("|---|---:|---:|---:|---|---|")
        print("\n".join(lines))
    for line in failed:
        print(f"\n{line}")


if __name__ == "__main__":
    main(sys.argv[1])
