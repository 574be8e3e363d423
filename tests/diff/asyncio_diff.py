#!/usr/bin/env python3
"""Differential test of greenfiber's task layer against CPython's asyncio.

Each seed makes a random task program (make_program). The program runs twice: here on
asyncio (run_asyncio), and in the C++ interpreter tests/diff/asyncio_diff_interp.cpp on
greenfiber, which reads the same text on its standard input. Both print one trace line per
event (an operation, a resumption, a callback, a task's end); the traces must be identical.

    asyncio_diff.py --interp build/tests/diff/asyncio_diff_interp --seeds 0:300
    asyncio_diff.py --interp ... --seeds 0:20000          # the long run (README, "Tests")
    asyncio_diff.py --interp ... --seeds 17:18 --show     # one program, both traces

The program language (one task per line, operations separated by spaces; task 0 is main):
    P <ntasks> <nevents>          header
    T <i> <catch> <end> <ops...>  task i; catch=1: a cancellation is caught, uncancelled to
                                  zero and the task returns 10*i+1; end: r returns 10*i,
                                  x raises an error naming the task
    s:J     spawn task J (asyncio.create_task)
    y       yield_now() / await asyncio.sleep(0)
    c:N     call_soon(callback N)
    a:J:N   add done callback N to task J
    r:N     remove done callback N (from the task it was added to)
    k:J     cancel task J
    e:K     set event K            w:K   wait for event K
    g:J     get() / await task J
    W:m:J,K wait(): m=a all completed, m=f first completed
    G:J,K   gather(J, K)           F:J   wait_for(task J, 1000 s)
    t:J,K   a task group (with_task_group / async with TaskGroup) spawning tasks J and K
A task that was not spawned (yet) makes an operation on it a logged no-op. Main starts a
"clock" task that yields CLOCK_TURNS times and then sets every event, so that no wait on an
event lasts for ever, and main ends by waiting for every spawned task with wait().

What the generator avoids, because greenfiber differs from asyncio there on purpose (each
listed in task.hpp or combinators.hpp) or because asyncio itself is not deterministic:
  - Cancelling a task that may wait on another task (get, wait, gather, wait_for), with
    cancel() or as a task group's sibling of a failed task. Both cancel the task a parked
    get() / `await task` awaits inside cancel() (task_test's
    CancellingAGetCancelsTheAwaitedTaskAtOnce), but asyncio 3.11's cancellation is
    edge-triggered per request where greenfiber's is sticky until uncancel() (task.hpp): a
    task whose cancellation was absorbed by what it awaited (a get() whose task caught the
    cancellation and returned; wait_for's 3.11 rule that returns the result of a finished
    task when cancelled) goes on in asyncio and raises in greenfiber. A cancellation caught
    by the generator's catch is followed by uncancel() to zero, where the two agree.
  - A cancelled gather() raises at once in greenfiber (after cancelling its children);
    asyncio 3.11's raises once the first child finished cancelled.
  - Timed sleeps and timeouts that fire: the order of timers against the ready queue
    depends on the wall clock in both implementations; wait_for uses a timeout that never
    fires.
  - shield() and as_completed(): greenfiber's shield is a task (its start and its
    cancellation take a turn of their own); asyncio's as_completed hands out results in the
    order of a set.
  - A task group's body holds only its spawns: asyncio 3.11 leaves the parent's
    cancelling() count at 1 when a child fails while __aexit__ waits (its uncancel() comes
    before that wait; 3.12 moved it), greenfiber withdraws its request. Owners of groups
    are never cancelled, so the count is never printed for them.
  - The end of asyncio.run() cancels the tasks still running in the order of a set: main
    waits for every task instead.
"""

import argparse
import asyncio
import random
import subprocess
import sys

CLOCK_TURNS = 40


# -- generator ---------------------------------------------------------------------------------

WAITING_OPS = ("g", "W", "G", "F", "t")


def make_program(seed):
    rnd = random.Random(seed)
    n = rnd.randint(2, 7)
    nevents = rnd.randint(0, 2)
    # A task that may wait on other tasks is never cancelled (see the module's docs).
    waits = [i == 0 or (i < n - 1 and rnd.random() < 0.45) for i in range(n)]
    cancellable = [i for i in range(1, n) if not waits[i]]
    ops = [[] for _ in range(n)]
    next_cb = 0
    added = [[] for _ in range(n)]
    for i in range(n):
        for _ in range(rnd.randint(0, 6)):
            kind = rnd.choice("yyccaarkkewgWGF")
            if kind == "y":
                ops[i].append("y")
            elif kind == "c":
                ops[i].append("c:%d" % next_cb)
                next_cb += 1
            elif kind == "a":
                ops[i].append("a:%d:%d" % (rnd.randint(1, n - 1), next_cb))
                added[i].append(next_cb)
                next_cb += 1
            elif kind == "r" and added[i]:
                ops[i].append("r:%d" % rnd.choice(added[i]))
            elif kind == "k" and cancellable:
                ops[i].append("k:%d" % rnd.choice(cancellable))
            elif kind == "e" and nevents:
                ops[i].append("e:%d" % rnd.randrange(nevents))
            elif kind == "w" and nevents:
                ops[i].append("w:%d" % rnd.randrange(nevents))
            elif kind in WAITING_OPS and waits[i] and i < n - 1:
                later = list(range(i + 1, n))
                if kind == "g":
                    ops[i].append("g:%d" % rnd.choice(later))
                elif kind == "F":
                    ops[i].append("F:%d" % rnd.choice(later))
                else:
                    some = sorted(rnd.sample(later, rnd.randint(1, min(3, len(later)))))
                    arg = ",".join(map(str, some))
                    if kind == "W":
                        ops[i].append("W:%s:%s" % (rnd.choice("af"), arg))
                    else:
                        ops[i].append("G:%s" % arg)
    # Each task but main is spawned once, by a task of a lower index, or by a task group of
    # a task that may wait (a group cancels its tasks: only tasks that never wait on others).
    for j in range(1, n):
        spawner = rnd.randrange(j)
        groups = [k for k, op in enumerate(ops[spawner]) if op.startswith("t:")]
        if waits[spawner] and not waits[j] and rnd.random() < 0.3:
            if groups and rnd.random() < 0.6:
                k = rnd.choice(groups)
                ops[spawner][k] += ",%d" % j
            else:
                ops[spawner].insert(rnd.randint(0, len(ops[spawner])), "t:%d" % j)
        else:
            ops[spawner].insert(rnd.randint(0, len(ops[spawner])), "s:%d" % j)
    lines = ["P %d %d" % (n, nevents)]
    for i in range(n):
        catch = 1 if (i in cancellable and rnd.random() < 0.4) else 0
        end = "r" if i == 0 or rnd.random() < 0.7 else "x"
        lines.append(" ".join(["T", str(i), str(catch), end] + ops[i]))
    return "\n".join(lines) + "\n"


def parse(text):
    lines = text.strip().split("\n")
    _, n, nevents = lines[0].split()
    tasks = []
    for line in lines[1:]:
        parts = line.split()
        tasks.append({"catch": parts[2] == "1", "end": parts[3], "ops": parts[4:]})
    assert len(tasks) == int(n)
    return tasks, int(nevents)


# -- asyncio ------------------------------------------------------------------------------------


class TaskError(Exception):
    pass


def run_asyncio(text):
    tasks, nevents = parse(text)
    trace = []
    log = trace.append
    handles = {}
    callbacks = {}  # N -> (task handle, function)

    def status(t):
        if t.cancelled():
            return "cancelled"
        if t.exception() is not None:
            return "raised " + str(t.exception())
        return "returned %d" % t.result()

    def outcome(fn):
        # Runs fn() (a coroutine function) and describes its result.
        async def go():
            try:
                return "-> %s" % (await fn(),)
            except asyncio.CancelledError:
                raise
            except TaskError as e:
                return "-> error " + str(e)

        return go()

    async def body(i, events):
        spec = tasks[i]
        me = "t%d" % i

        async def ops():
            for op in spec["ops"]:
                parts = op.split(":")
                kind = parts[0]
                if kind == "s":
                    j = int(parts[1])
                    log("%s spawn t%d" % (me, j))
                    handles[j] = asyncio.get_running_loop().create_task(body(j, events))
                elif kind == "y":
                    log(me + " yield")
                    await asyncio.sleep(0)
                    log(me + " resumed")
                elif kind == "c":
                    n = parts[1]
                    log("%s call_soon c%s" % (me, n))
                    asyncio.get_running_loop().call_soon(lambda n=n: log("c" + n))
                elif kind == "a":
                    j, n = int(parts[1]), parts[2]
                    if j not in handles:
                        log("%s add c%s to t%d: not spawned" % (me, n, j))
                        continue
                    log("%s add c%s to t%d" % (me, n, j))

                    def cb(t, n=n, j=j):
                        log("c%s t%d %s" % (n, j, status(t)))

                    handles[j].add_done_callback(cb)
                    callbacks[n] = (handles[j], cb)
                elif kind == "r":
                    n = parts[1]
                    if n not in callbacks:
                        log("%s remove c%s: not added" % (me, n))
                        continue
                    t, cb = callbacks[n]
                    log("%s remove c%s -> %d" % (me, n, t.remove_done_callback(cb)))
                elif kind == "k":
                    j = int(parts[1])
                    if j not in handles:
                        log("%s cancel t%d: not spawned" % (me, j))
                        continue
                    log("%s cancel t%d -> %s" % (me, j, handles[j].cancel()))
                elif kind == "e":
                    log("%s set e%s" % (me, parts[1]))
                    events[int(parts[1])].set()
                elif kind == "w":
                    log("%s wait e%s" % (me, parts[1]))
                    await events[int(parts[1])].wait()
                    log("%s waited e%s" % (me, parts[1]))
                else:
                    await waiting(kind, parts)

        async def waiting(kind, parts):
            if kind == "t":
                ids = [int(x) for x in parts[1].split(",")]
                arg = ",".join("t%d" % j for j in ids)
                log("%s group %s" % (me, arg))
                try:
                    async with asyncio.TaskGroup() as g:
                        for j in ids:
                            log("%s spawn t%d" % (me, j))
                            handles[j] = g.create_task(body(j, events))
                except BaseExceptionGroup as eg:
                    errors = ", ".join(str(e) for e in eg.exceptions)
                    log("%s group %s -> errors %s" % (me, arg, errors))
                    return
                log("%s group %s -> ok" % (me, arg))
                return
            if kind in ("g", "F"):
                j = int(parts[1])
                name = "get" if kind == "g" else "wait_for"
                if j not in handles:
                    log("%s %s t%d: not spawned" % (me, name, j))
                    return
                log("%s %s t%d" % (me, name, j))
                if kind == "g":
                    r = await outcome(lambda: handles[j])
                else:
                    r = await outcome(lambda: asyncio.wait_for(handles[j], 1000))
                log("%s %s t%d %s" % (me, name, j, r))
                return
            ids = [int(x) for x in parts[-1].split(",") if int(x) in handles]
            name = "wait" + parts[1] if kind == "W" else "gather"
            arg = ",".join("t%d" % j for j in ids)
            if not ids:
                log("%s %s: none spawned" % (me, name))
                return
            log("%s %s %s" % (me, name, arg))
            if kind == "W":
                when = asyncio.ALL_COMPLETED if parts[1] == "a" else asyncio.FIRST_COMPLETED
                done, _ = await asyncio.wait([handles[j] for j in ids], return_when=when)
                names = ",".join("t%d" % j for j in ids if handles[j] in done)
                log("%s %s %s -> done %s" % (me, name, arg, names))
            else:

                async def g():
                    return list(await asyncio.gather(*[handles[j] for j in ids]))

                log("%s %s %s %s" % (me, name, arg, await outcome(g)))

        try:
            await ops()
        except asyncio.CancelledError:
            if not spec["catch"]:
                log(me + " cancelled")
                raise
            t = asyncio.current_task()
            log("%s caught the cancellation, cancelling %d" % (me, t.cancelling()))
            while t.cancelling() > 0:
                t.uncancel()
            log("%s returns %d" % (me, 10 * i + 1))
            return 10 * i + 1
        if spec["end"] == "x":
            log(me + " raises")
            raise TaskError(me)
        log("%s returns %d" % (me, 10 * i))
        return 10 * i

    async def clock(events):
        for _ in range(CLOCK_TURNS):
            await asyncio.sleep(0)
        log("clock sets the events")
        for e in events:
            e.set()

    async def main():
        events = [asyncio.Event() for _ in range(nevents)]
        c = asyncio.get_running_loop().create_task(clock(events))
        try:
            await body(0, events)
        except asyncio.CancelledError:
            pass  # main waited for a cancelled task: it goes on to wait for the rest
        for j in range(1, len(tasks)):
            if j in handles:
                await asyncio.wait([handles[j]])
        await c
        for j in range(1, len(tasks)):
            log("final t%d %s" % (j, status(handles[j]) if j in handles else "not spawned"))

    asyncio.run(main())
    return "\n".join(trace) + "\n"


# -- driver -------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interp", required=True, help="the C++ interpreter (asyncio_diff_interp)")
    ap.add_argument("--seeds", default="0:300", help="a range A:B of seeds")
    ap.add_argument("--show", action="store_true", help="print programs and traces")
    ap.add_argument("--batch", type=int, default=200, help="programs per interpreter run")
    args = ap.parse_args()
    first, last = (int(x) for x in args.seeds.split(":"))
    seeds = list(range(first, last))
    differ = []
    for b in range(0, len(seeds), args.batch):
        batch = seeds[b : b + args.batch]
        programs = [make_program(s) for s in batch]
        expected = [run_asyncio(p) for p in programs]
        out = subprocess.run(
            [args.interp],
            input="".join(p + "E\n" for p in programs),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            print("asyncio_diff: the interpreter failed (exit %d) in seeds %d:%d"
                  % (out.returncode, batch[0], batch[-1] + 1))
            return 1
        got = out.stdout.split("E\n")[:-1]
        if len(got) != len(programs):
            print("asyncio_diff: the interpreter printed %d traces for %d programs"
                  % (len(got), len(programs)))
            return 1
        for seed, prog, want, have in zip(batch, programs, expected, got):
            if want != have:
                differ.append(seed)
            if args.show or (want != have and len(differ) <= 3):
                print("== seed %d%s\n%s-- asyncio\n%s-- greenfiber\n%s" % (
                    seed, "" if want == have else " DIFFERS", prog, want, have))
    same = len(seeds) - len(differ)
    print("asyncio_diff: %d of %d programs (%.1f %%) gave identical traces"
          % (same, len(seeds), 100.0 * same / max(1, len(seeds))))
    if differ:
        print("asyncio_diff: differing seeds: %s" % " ".join(map(str, differ[:50])))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
