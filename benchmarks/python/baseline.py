#!/usr/bin/env python3
"""The Python side of mpp's benchmarks: CPython's own multiprocessing, same workloads.

Runs every workload of benchmarks/mpp_bench.cpp with the standard library only
(multiprocessing, fork context, the same worker count) and prints a table, and
with --json FILE writes the JSON shape that benchmarks/compare.py reads (the
workload keys and units are listed once, in compare.py's docstring):

    {"implementation": "python", "processes": N, "quick": bool, "config": {...},
     "workloads": {"<key>": {"unit": "...", "median": x, "min": x, "max": x,
                             "higher_is_better": bool, "runs": n}}}

Usage: python3 benchmarks/python/baseline.py [--quick] [--processes N] [--json FILE]
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time

CTX = multiprocessing.get_context("fork")


# ---------------------------------------------------------------------------
# Task functions (module level, so that the pool can pickle them by name).

def square(x):
    return x * x


def add(a, b):
    return a + b


def make_bytes(n):
    return bytes(n)


def cpu_work(iterations):
    """The CPU-bound item: the same LCG loop as mpp_bench's cpu_work."""
    x = 1
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def noop():
    pass


def queue_producer(q, n):
    for i in range(n + 1):  # item 0 is the start signal, then n timed items
        q.put(i)


def pipe_echo(conn):
    while True:
        x = conn.recv()
        conn.send(x)
        if x < 0:
            return


def pipe_sender(conn, n):
    for i in range(n + 1):  # item 0 is the start signal
        conn.send(i)


def value_incrementer(value, go, n):
    go.wait()
    for _ in range(n):
        with value.get_lock():
            value.value += 1


# ---------------------------------------------------------------------------
# Sizes: the same for both implementations (mpp_bench.cpp has the twin table).

def sizes(quick):
    return {
        "runs": 3 if quick else 5,
        "min_seconds": 0.1 if quick else 0.5,
        "map_default_n": 200_000,
        "map_chunksize1_n": 5_000 if quick else 20_000,
        "many_tasks_n": 5_000 if quick else 20_000,
        "apply_latency_calls": 500 if quick else 2_000,
        "starmap_n": 200_000,
        "payload_mib": [1, 8, 64],
        "cpu_items": 64,
        "cpu_item_ms": 5.0 if quick else 10.0,
        "cpu_runs": 3 if quick else 9,
        "queue_items": 10_000 if quick else 50_000,
        "pipe_round_trips": 2_000 if quick else 10_000,
        "pipe_messages": 10_000 if quick else 50_000,
        "value_increments_per_process": 25_000 if quick else 100_000,
        "lock_pairs": 200_000 if quick else 1_000_000,
        "lock_batch": 10_000,
        "array_n": 200_000 if quick else 1_000_000,
        "start_stop_samples": 8 if quick else 20,
    }


# ---------------------------------------------------------------------------

class Results:
    def __init__(self):
        self.workloads = {}

    def add(self, key, unit, samples, higher_is_better):
        self.workloads[key] = {
            "unit": unit,
            "median": statistics.median(samples),
            "min": min(samples),
            "max": max(samples),
            "higher_is_better": higher_is_better,
            "runs": len(samples),
        }
        w = self.workloads[key]
        print(f"  {key:<34} {w['median']:>14.6g} {unit:<8} "
              f"(min {w['min']:.6g}, max {w['max']:.6g}, {len(samples)} runs)", flush=True)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def call_seconds(cfg, fn, untimed_after=lambda: None):
    """Seconds per call of fn: one untimed call first, then at least cfg["runs"] timed calls and
    at least cfg["min_seconds"] of them in all, as timeit's autorange does (mpp_bench.cpp's
    call_seconds is the same rule). untimed_after runs after each call."""
    max_runs = 500
    fn()
    untimed_after()
    seconds = []
    while len(seconds) < cfg["runs"] or (sum(seconds) < cfg["min_seconds"] and len(seconds) < max_runs):
        seconds.append(timed(fn))
        untimed_after()
    return seconds


def rates_of(units, seconds):
    return [units / s for s in seconds]


def percentile(values, p):
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def calibrate_cpu_iterations(item_ms):
    """Iterations of cpu_work that take item_ms milliseconds of CPU time here (CPU time, so that
    a loaded machine does not shrink the items)."""
    def cpu_timed():
        t0 = time.thread_time()
        cpu_work(iterations)
        return time.thread_time() - t0
    iterations = 20_000
    while True:
        t = min(cpu_timed() for _ in range(3))
        if t > 0.02:
            break
        iterations *= 2
    return max(1, int(iterations * (item_ms / 1000.0) / t))


def bench_pool_workloads(res, cfg, processes):
    runs = cfg["runs"]
    with CTX.Pool(processes) as pool:
        pool.map(square, range(1000))  # warm up: workers started and imported

        # 1. trivial map
        n = cfg["map_default_n"]
        xs = list(range(n))
        res.add("map_trivial_default", "tasks/s",
                rates_of(n, call_seconds(cfg, lambda: pool.map(square, xs))), True)
        n = cfg["map_chunksize1_n"]
        xs = list(range(n))
        res.add("map_trivial_chunksize1", "tasks/s",
                rates_of(n, call_seconds(cfg, lambda: pool.map(square, xs, chunksize=1))), True)

        # 2. many small tasks, and one task's round trip
        n = cfg["many_tasks_n"]
        xs = list(range(n))

        def imap_unordered_all():
            for _ in pool.imap_unordered(square, xs, chunksize=1):
                pass
        res.add("imap_unordered_chunksize1", "tasks/s",
                rates_of(n, call_seconds(cfg, imap_unordered_all)), True)

        def apply_async_all():
            handles = [pool.apply_async(square, (x,)) for x in xs]
            for h in handles:
                h.get()
        res.add("apply_async", "tasks/s",
                rates_of(n, call_seconds(cfg, apply_async_all)), True)

        medians, p99s = [], []
        for _ in range(runs):
            lat = []
            for i in range(cfg["apply_latency_calls"]):
                t0 = time.perf_counter()
                pool.apply(square, (i,))
                lat.append((time.perf_counter() - t0) * 1e6)
            medians.append(statistics.median(lat))
            p99s.append(percentile(lat, 99))
        res.add("apply_latency_median", "us", medians, False)
        res.add("apply_latency_p99", "us", p99s, False)

        # 3. starmap
        n = cfg["starmap_n"]
        pairs = [(i, n - i) for i in range(n)]
        res.add("starmap_default", "tasks/s",
                rates_of(n, call_seconds(cfg, lambda: pool.starmap(add, pairs))), True)

        # 4. payloads: to the worker (it returns the length), and back (it makes the bytes)
        for mib in cfg["payload_mib"]:
            nbytes = mib << 20
            megabytes = nbytes / 1e6
            payload = bytes(nbytes)

            def send():
                assert pool.apply(len, (payload,)) == nbytes
            res.add(f"payload_{mib}MiB_to_worker", "MB/s", rates_of(megabytes, call_seconds(cfg, send)), True)
            del payload
            got = [None]  # freed after the clock stops

            def fetch():
                got[0] = pool.apply(make_bytes, (nbytes,))
                assert len(got[0]) == nbytes

            def free_it():
                got[0] = None
            res.add(f"payload_{mib}MiB_from_worker", "MB/s",
                    rates_of(megabytes, call_seconds(cfg, fetch, free_it)), True)

        # 5. CPU-bound items: serial vs parallel (items calibrated to cpu_item_ms each)
        iterations = calibrate_cpu_iterations(cfg["cpu_item_ms"])
        cfg["cpu_iterations"] = iterations
        items = [iterations] * cfg["cpu_items"]
        serial, parallel, speedup = [], [], []
        for _ in range(cfg["cpu_runs"]):
            t_serial = timed(lambda: [cpu_work(x) for x in items])
            t_parallel = timed(lambda: pool.map(cpu_work, items))
            serial.append(t_serial * 1e3)
            parallel.append(t_parallel * 1e3)
            speedup.append(t_serial / t_parallel)
        res.add("cpu_serial_time", "ms", serial, False)
        res.add("cpu_parallel_time", "ms", parallel, False)
        res.add("cpu_speedup", "x", speedup, True)
        res.add("cpu_efficiency", "%", [100.0 * s / processes for s in speedup], True)


def bench_primitives(res, cfg):
    runs = cfg["runs"]

    # Queue: one producer process, the consumer is this process; timed from the first item.
    n = cfg["queue_items"]
    rates = []
    for _ in range(runs):
        q = CTX.Queue()
        p = CTX.Process(target=queue_producer, args=(q, n))
        p.start()
        q.get()
        t0 = time.perf_counter()
        for _ in range(n):
            q.get()
        rates.append(n / (time.perf_counter() - t0))
        p.join()
    res.add("queue_put_get", "items/s", rates, True)

    # Pipe round trip: the child echoes what it receives.
    n = cfg["pipe_round_trips"]
    rtts = []
    for _ in range(runs):
        here, there = CTX.Pipe()
        p = CTX.Process(target=pipe_echo, args=(there,))
        p.start()
        here.send(0)
        here.recv()  # the child is up
        t0 = time.perf_counter()
        for i in range(n):
            here.send(i)
            here.recv()
        rtts.append((time.perf_counter() - t0) / n * 1e6)
        here.send(-1)
        here.recv()
        p.join()
    res.add("pipe_round_trip", "us", rtts, False)

    # Pipe one way: the child sends, this process receives; timed from the first message.
    n = cfg["pipe_messages"]
    rates = []
    for _ in range(runs):
        here, there = CTX.Pipe()
        p = CTX.Process(target=pipe_sender, args=(there, n))
        p.start()
        here.recv()
        t0 = time.perf_counter()
        for _ in range(n):
            here.recv()
        rates.append(n / (time.perf_counter() - t0))
        p.join()
    res.add("pipe_one_way", "msgs/s", rates, True)

    # Value += 1 under its lock from 2 processes at once.
    n = cfg["value_increments_per_process"]
    rates = []
    for _ in range(runs):
        value = CTX.Value("q", 0)
        go = CTX.Event()
        procs = [CTX.Process(target=value_incrementer, args=(value, go, n)) for _ in range(2)]
        for p in procs:
            p.start()
        time.sleep(0.05)  # let both reach go.wait()
        t0 = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - t0
        assert value.value == 2 * n
        rates.append(2 * n / elapsed)
    res.add("value_increment_locked_2proc", "ops/s", rates, True)

    # Uncontended Lock acquire + release, timed in short batches: a batch rarely loses the CPU,
    # so the median batch shows the lock's own cost even on a loaded machine.
    batch = cfg["lock_batch"]
    lock = CTX.Lock()
    acquire, release = lock.acquire, lock.release
    per_pair = []
    for _ in range(cfg["lock_pairs"] // batch):
        t0 = time.perf_counter()
        for _ in range(batch):
            acquire()
            release()
        per_pair.append((time.perf_counter() - t0) / batch * 1e9)
    res.add("lock_uncontended", "ns", per_pair, False)

    # Array fill: write every element once, under the array's lock.
    n = cfg["array_n"]
    arr = CTX.Array("q", n)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with arr.get_lock():
            raw = arr.get_obj()
            for i in range(n):
                raw[i] = i
        rates.append(n / (time.perf_counter() - t0))
    assert arr[n - 1] == n - 1
    res.add("array_fill", "items/s", rates, True)


def bench_start_stop(res, cfg, processes):
    samples = cfg["start_stop_samples"]
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        pool = CTX.Pool(processes)
        pool.close()
        pool.join()
        times.append((time.perf_counter() - t0) * 1e3)
    res.add("pool_start_stop", "ms", times, False)

    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        p = CTX.Process(target=noop)
        p.start()
        p.join()
        times.append((time.perf_counter() - t0) * 1e3)
    res.add("process_start_join", "ms", times, False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller sizes (the demo)")
    parser.add_argument("--processes", type=int, default=0,
                        help="worker processes (default: CPUs this process may run on)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args()

    processes = args.processes or len(os.sched_getaffinity(0))
    if processes < 1:
        parser.error("--processes must be at least 1")
    cfg = sizes(args.quick)
    res = Results()
    print(f"Python {sys.version.split()[0]} multiprocessing (fork), {processes} processes"
          f"{', quick' if args.quick else ''}", flush=True)
    started = time.perf_counter()
    # Start + stop first, from a parent that holds only what the interpreter needs: each fork
    # copies the parent's page tables, so later rows' leftovers would be timed here too.
    bench_start_stop(res, cfg, processes)
    bench_pool_workloads(res, cfg, processes)
    bench_primitives(res, cfg)
    print(f"  (total {time.perf_counter() - started:.1f} s)", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"implementation": "python", "processes": processes, "quick": args.quick,
                       "config": cfg, "workloads": res.workloads}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
