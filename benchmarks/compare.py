#!/usr/bin/env python3
"""mpp against Python's multiprocessing: both benchmarks in one run, one table, a JSON and an SVG.

Runs BUILD_DIR/benchmarks/mpp_bench and benchmarks/python/baseline.py one after the
other on this machine with the same worker count, then prints

    workload | mpp | Python | mpp/Python | target | met?

where the ratio is oriented so that > 1 always means mpp is better (a rate is
mpp/Python, a time is Python/mpp). It writes OUT/compare.json (both result sets,
the ratios and the verdicts), OUT/compare.md (the same table in Markdown) and
OUT/compare.svg (the ratios as a log-scale bar chart with each target marked).
Exit status: 0 when both ran (missed targets are reported, not failures),
2 when mpp_bench is missing or a benchmark failed.

Usage: python3 benchmarks/compare.py --build-dir build/default [--quick] [--out DIR] [--processes N]

Both programs write the same JSON shape:

    {"implementation": "mpp" | "python", "processes": N, "quick": bool,
     "workloads": {"<key>": {"unit": "...", "median": x, "min": x, "max": x,
                             "higher_is_better": bool, "runs": n}}}

The workload keys (every key is on both sides unless marked "mpp only"):

    map_trivial_default           tasks/s  map(x*x) over 200,000 ints, default chunksize
    map_trivial_chunksize1        tasks/s  map(x*x) over 20,000 ints, chunksize=1
    imap_unordered_chunksize1     tasks/s  imap_unordered(x*x) over 20,000 ints, chunksize=1
    apply_async                   tasks/s  20,000 apply_async(x*x), then every get()
    apply_latency_median          us       one apply(x*x) round trip, median of 2,000 calls
    apply_latency_p99             us       the same, 99th percentile
    starmap_default               tasks/s  starmap(a+b) over 200,000 pairs, default chunksize
    payload_{1,8,64}MiB_to_worker    MB/s  apply(len, bytes of that size) (10^6 bytes/s)
    payload_{1,8,64}MiB_from_worker  MB/s  apply(make n zero bytes) returned to the parent
    cpu_serial_time               ms       64 CPU-bound items in a loop in the parent; each item is
                                           calibrated to take the same CPU time (10 ms; quick: 5 ms)
                                           on each side, so both sides split the same granularity
    cpu_parallel_time             ms       the same items through map() on the pool
    cpu_speedup                   x        serial / parallel, per run
    cpu_efficiency                %        speedup / processes
    cpu_speedup_bare_processes    x        mpp only: the same items dealt round-robin to forked
                                           children that already wait for the start, no pool:
                                           the speedup this machine allows
    queue_put_get                 items/s  one producer process puts ints, the parent gets them
    pipe_round_trip               us       parent sends an int, a child process echoes it back
    pipe_one_way                  msgs/s   a child process sends ints, the parent receives
    value_increment_locked_2proc  ops/s    two processes do `with v.get_lock(): v += 1`
    lock_uncontended              ns       one acquire + release of a Lock nobody else uses
                                           (median over batches of 10,000 pairs)
    array_fill                    items/s  the parent writes every element of an int64 Array
    pool_start_stop               ms       Pool(processes) then close() + join()
    pool_start_stop_bare_forks    ms       mpp only: no pool, the forks alone: a process forks
                                           `processes` children that exit at once and reaps them
                                           (processes + 1 forks, exits and waits, as a pool's fork
                                           server and workers): the floor under pool_start_stop
    process_start_join            ms       Process(target=noop).start() + join()
    process_start_join_bare_fork  ms       mpp only: fork(), _exit(0) in the child, waitpid()
    uneven_chunksize_{auto,1,8,64,512}  ms   mpp only: 1% of the items are 1000x slower than the
                                           rest; map with chunksize 0 (auto) and hand-picked ones
    uneven_auto_over_best         x        mpp only: auto time / best hand-picked time (lower is better)

Sizes shrink with --quick (the same on both sides); each JSON records its own.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Issue 6's targets. ("ratio", x): mpp/Python (oriented) >= x.
# ("at_least", x) / ("at_most", x): mpp's own value against an absolute bound.
TARGETS = {
    "map_trivial_chunksize1": ("ratio", 50),
    "map_trivial_default": ("ratio", 50),
    "imap_unordered_chunksize1": ("ratio", 50),
    "apply_async": ("ratio", 50),
    "starmap_default": ("ratio", 50),
    "apply_latency_median": ("ratio", 15),
    "payload_64MiB_to_worker": ("ratio", 8),
    "payload_64MiB_from_worker": ("ratio", 8),
    "cpu_speedup": ("at_least", 1.95),
    "queue_put_get": ("ratio", 30),
    "pipe_round_trip": ("ratio", 10),
    "value_increment_locked_2proc": ("ratio", 10),
    "lock_uncontended": ("at_most", 40),
    "pool_start_stop": ("ratio", 10),
    "process_start_join": ("ratio", 10),
    "uneven_auto_over_best": ("at_most", 1.10),
}

ORDER = [
    "map_trivial_default", "map_trivial_chunksize1", "imap_unordered_chunksize1", "apply_async",
    "apply_latency_median", "apply_latency_p99", "starmap_default",
    "payload_1MiB_to_worker", "payload_1MiB_from_worker", "payload_8MiB_to_worker",
    "payload_8MiB_from_worker", "payload_64MiB_to_worker", "payload_64MiB_from_worker",
    "cpu_serial_time", "cpu_parallel_time", "cpu_speedup", "cpu_efficiency",
    "cpu_speedup_bare_processes",
    "queue_put_get", "pipe_round_trip", "pipe_one_way", "value_increment_locked_2proc",
    "lock_uncontended", "array_fill", "pool_start_stop", "pool_start_stop_bare_forks",
    "process_start_join", "process_start_join_bare_fork",
    "uneven_chunksize_auto", "uneven_chunksize_1", "uneven_chunksize_8", "uneven_chunksize_64",
    "uneven_chunksize_512", "uneven_auto_over_best",
]


def fmt_value(value, unit):
    if value is None:
        return "—"
    if unit.endswith("/s"):
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{prefix} {unit}"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def fmt_target(target):
    if target is None:
        return ""
    kind, bound = target
    return {"ratio": f">= {bound:g}x", "at_least": f">= {bound:g}", "at_most": f"<= {bound:g}"}[kind]


def oriented_ratio(mpp, py, higher_is_better):
    if mpp is None or py is None or mpp <= 0 or py <= 0:
        return None
    return mpp / py if higher_is_better else py / mpp


def target_as_ratio(target, py, higher_is_better):
    """Where the target sits on the ratio axis (for the chart), or None."""
    if target is None:
        return None
    kind, bound = target
    if kind == "ratio":
        return bound
    return oriented_ratio(bound, py, higher_is_better)


def run(cmd, label):
    print(f"$ {' '.join(str(c) for c in cmd)}", flush=True)
    started = time.perf_counter()
    status = subprocess.call([str(c) for c in cmd])
    print(f"  ({label}: {time.perf_counter() - started:.1f} s, exit {status})\n", flush=True)
    return status


def load(path):
    with open(path) as f:
        return json.load(f)


def build_rows(mpp, py):
    rows = []
    keys = [k for k in ORDER if k in mpp["workloads"] or k in py["workloads"]]
    keys += sorted(k for k in set(mpp["workloads"]) | set(py["workloads"]) if k not in ORDER)
    for key in keys:
        m = mpp["workloads"].get(key)
        p = py["workloads"].get(key)
        unit = (m or p)["unit"]
        higher = (m or p)["higher_is_better"]
        m_med = m["median"] if m else None
        p_med = p["median"] if p else None
        ratio = oriented_ratio(m_med, p_med, higher)
        target = TARGETS.get(key)
        met = None
        if target is not None:
            kind, bound = target
            if kind == "ratio" and ratio is not None:
                met = ratio >= bound
            elif kind == "at_least" and m_med is not None:
                met = m_med >= bound
            elif kind == "at_most" and m_med is not None:
                met = m_med <= bound
        rows.append({
            "workload": key, "unit": unit, "higher_is_better": higher,
            "mpp": m, "python": p, "ratio": ratio,
            "target": None if target is None else {"kind": target[0], "value": target[1]},
            "target_ratio": target_as_ratio(target, p_med, higher),
            "met": met,
        })
    return rows


def table_lines(rows, markdown):
    header = ["workload", "mpp", "Python", "mpp/Python", "target", "met?"]
    body = []
    for r in rows:
        body.append([
            r["workload"],
            fmt_value(r["mpp"]["median"] if r["mpp"] else None, r["unit"]),
            fmt_value(r["python"]["median"] if r["python"] else None, r["unit"]),
            "—" if r["ratio"] is None else f"{r['ratio']:.3g}x",
            fmt_target(None if r["target"] is None else (r["target"]["kind"], r["target"]["value"])),
            {True: "yes", False: "NO", None: ""}[r["met"]] if r["target"] else "",
        ])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return lines
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    line = lambda row: " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(row, widths)))
    return [line(header), "-+-".join("-" * w for w in widths)] + [line(row) for row in body]


def svg_chart(rows, title):
    """Horizontal bars of the oriented ratio on a log axis; a tick per target."""
    rows = [r for r in rows if r["ratio"] is not None]
    values = [r["ratio"] for r in rows] + [r["target_ratio"] for r in rows if r["target_ratio"]]
    lo = 10 ** math.floor(math.log10(min(values + [1.0]) * 0.9))
    hi = 10 ** math.ceil(math.log10(max(values + [10.0]) * 1.1))
    label_w, plot_w, bar_h, gap, top = 240, 560, 16, 6, 56
    height = top + len(rows) * (bar_h + gap) + 50
    width = label_w + plot_w + 90
    x = lambda v: label_w + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">{esc(title)}</text>',
           f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">mpp / Python '
           f'(log scale, &gt; 1 = mpp better; black tick = target)</text>']
    decade = lo
    while decade <= hi * 1.0001:
        gx = x(decade)
        out.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{height - 40}" '
                   f'stroke="{"#888" if decade == 1 else "#ddd"}"/>')
        out.append(f'<text x="{gx:.1f}" y="{height - 26}" text-anchor="middle">{decade:g}x</text>')
        decade *= 10
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        colour = {True: "#3a9a4a", False: "#d0453a", None: "#7a8fb0"}[r["met"]]
        x0, x1 = x(1.0), x(r["ratio"])
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">'
                   f'{esc(r["workload"])}</text>')
        out.append(f'<rect x="{min(x0, x1):.1f}" y="{y}" width="{max(abs(x1 - x0), 1):.1f}" '
                   f'height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + bar_h - 4}">{r["ratio"]:.3g}x</text>')
        if r["target_ratio"]:
            tx = x(min(max(r["target_ratio"], lo), hi))
            out.append(f'<line x1="{tx:.1f}" y1="{y - 2}" x2="{tx:.1f}" y2="{y + bar_h + 2}" '
                       f'stroke="black" stroke-width="2.5"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", required=True,
                        help="CMake build directory holding benchmarks/mpp_bench")
    parser.add_argument("--quick", action="store_true", help="short version (the README demo)")
    parser.add_argument("--out", help="where to write the results (default: BUILD_DIR/bench-results)")
    parser.add_argument("--processes", type=int, default=0,
                        help="worker processes on both sides (default: CPUs available)")
    args = parser.parse_args()

    build_dir = Path(args.build_dir)
    mpp_bench = build_dir / "benchmarks" / "mpp_bench"
    if not (mpp_bench.is_file() and os.access(mpp_bench, os.X_OK)):
        print(f"compare.py: {mpp_bench} not found. Build it first, e.g.\n"
              f"  cmake -S . -B {build_dir} -DCMAKE_BUILD_TYPE=Release && "
              f"cmake --build {build_dir} --target mpp_bench", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else build_dir / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    extra = (["--quick"] if args.quick else []) + \
            (["--processes", str(args.processes)] if args.processes else [])

    load_before = os.getloadavg()[0]
    mpp_json, py_json = out / "mpp.json", out / "python.json"
    for stale in (mpp_json, py_json):
        stale.unlink(missing_ok=True)
    # One after the other, never at once: on a 2-core machine they would steal each other's CPUs.
    if run([mpp_bench, "--json", mpp_json] + extra, "mpp_bench") != 0 or not mpp_json.exists():
        print("compare.py: mpp_bench failed; no comparison written", file=sys.stderr)
        return 2
    if run([sys.executable, HERE / "python" / "baseline.py", "--json", py_json] + extra,
           "Python baseline") != 0 or not py_json.exists():
        print("compare.py: the Python baseline failed; no comparison written", file=sys.stderr)
        return 2

    load_after = os.getloadavg()[0]
    mpp, py = load(mpp_json), load(py_json)
    rows = build_rows(mpp, py)
    title = (f"mpp vs Python multiprocessing, {mpp['processes']} processes"
             f"{' (quick)' if args.quick else ''}")
    busy = max(load_before, load_after) > 1.5 * (os.cpu_count() or 1)
    print(title)
    print(f"load average (1 min) before/after: {load_before:.1f} / {load_after:.1f} on "
          f"{os.cpu_count()} CPUs" + ("  -- BUSY MACHINE: other programs took CPU time, "
                                     "so the timings are noisy" if busy else ""))
    print("\n".join(table_lines(rows, markdown=False)))
    missed = [r["workload"] for r in rows if r["met"] is False]
    unknown = [k for k in TARGETS if not any(r["workload"] == k and r["met"] is not None for r in rows)]
    with_target = sum(1 for r in rows if r["met"] is not None)
    print(f"\ntargets met: {with_target - len(missed)}/{with_target}"
          + (f"; missed: {', '.join(missed)}" if missed else "")
          + (f"; not measured: {', '.join(unknown)}" if unknown else ""))

    (out / "compare.json").write_text(json.dumps(
        {"title": title, "load_average_before_after": [load_before, load_after], "mpp": mpp, "python": py, "rows": rows}, indent=2) + "\n")
    (out / "compare.md").write_text("\n".join(table_lines(rows, markdown=True)) + "\n")
    (out / "compare.svg").write_text(svg_chart(rows, title))
    print(f"wrote {out / 'compare.json'}, {out / 'compare.md'}, {out / 'compare.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
