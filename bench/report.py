#!/usr/bin/env python3
"""Turns a keel_bench JSON file into docs/benchmarks.md tables and PNG charts.

    python3 bench/report.py bench/results/<run>.json [extra.json ...] [--docs docs]

Extra files (e.g. the concurrent pass that run.sh repeats 15 times, the
noisiest measurement) override the entries of the first for the benchmarks
they contain.

Only the part of docs/benchmarks.md between the GENERATED markers is
rewritten; the prose around it is kept. Values are medians over the
repetitions. Point operations use the benchmark thread's CPU time (on a shared
machine it excludes the time the thread spent preempted); the concurrent
benchmark reports ops/s over each thread's own wall time.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys

BACKENDS = ["memory", "any_memory", "virtual_memory", "map", "lmdb",
            "rocks_default", "any_rocks", "virtual_rocks", "rocks_macos", "raw_rocks", "raw_defaults", "raw_memenv"]
WORKLOADS = ["get_hit", "get_miss", "put", "batch100", "scan1000", "snapshot", "snapshot_get", "reopen"]
UNITS_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
BEGIN, END = "<!-- BEGIN GENERATED (bench/report.py) -->", "<!-- END GENERATED -->"


def load(path):
    with open(path) as f:
        data = json.load(f)
    med, cv = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "aggregate":
            continue
        m = re.match(r"([a-z0-9_]+)/([a-z_]+)/(\d+)", b["run_name"])
        if not m:
            continue
        key = (m.group(1), m.group(2), int(m.group(3)))
        # cv is a ratio: never scaled by the time unit.
        scale = 1.0 if b["aggregate_name"] == "cv" else UNITS_NS[b.get("time_unit", "ns")]
        entry = {"cpu_ns": b["cpu_time"] * scale, "real_ns": b["real_time"] * scale}
        for c in ("reader_ops_per_s", "writer_ops_per_s", "bytes_per_entry"):
            if c in b:
                entry[c] = b[c]
        if b["aggregate_name"] == "median":
            med[key] = entry
        elif b["aggregate_name"] == "cv":
            cv[key] = entry
    return data, med, cv


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def machine(ctx):
    lscpu = sh("lscpu")
    pick = []
    for field in ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor", "Virtualization type",
                  "L2 cache", "L3 cache"):
        m = re.search(r"^%s:\s*(.+)$" % re.escape(field), lscpu, re.M)
        if m:
            pick.append("%s: %s" % (field, m.group(1).strip()))
    mem = sh("free -g | awk '/^Mem:/ {print $2}'")
    os_name = sh(". /etc/os-release && echo \"$PRETTY_NAME\"")
    gxx = sh("g++ --version | head -1")
    rocks = sh("dpkg-query -W -f='${Version}' librocksdb-dev")
    gbench = sh("dpkg-query -W -f='${Version}' libbenchmark-dev")
    lines = [
        "- CPU: " + "; ".join(pick),
        "- Memory: %s GiB; OS: %s; kernel %s" % (mem or "?", os_name or "?", platform.release()),
        "- Compiler: %s, `buildtype=release` (-O3, NDEBUG)" % (gxx or "g++"),
        "- RocksDB %s (Debian `librocksdb-dev`), Google Benchmark %s (Debian `libbenchmark-dev`)" % (rocks or "?", gbench or "?"),
        "- Run: %s; load average at start %s (`keel_sizes`: %s)" % (
            ctx.get("date", "?"), ", ".join("%.2f" % x for x in ctx.get("load_avg", [])), ctx.get("keel_sizes", "?")),
    ]
    return "\n".join(lines)


def fmt_ns(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.2f µs" % (ns / 1e3)
    return "%.0f ns" % ns


def fmt_rate(x):
    if x is None:
        return "-"
    return "%.2fM" % (x / 1e6) if x >= 1e6 else "%.0fk" % (x / 1e3)


def size_label(n):
    return "1M" if n == 1000000 else "%dk" % (n // 1000)


def tables(med, cv, sizes):
    out = []
    present = [b for b in BACKENDS if any(k[1] == b for k in med)]
    for n in sizes:
        out.append("\n#### %s keys: time per operation (median CPU time)\n" % size_label(n))
        out.append("| workload | " + " | ".join(present) + " |")
        out.append("|---|" + "---:|" * len(present))
        for w in WORKLOADS:
            row = [med.get((w, b, n), {}).get("cpu_ns") for b in present]
            if all(v is None for v in row):
                continue
            cells = []
            for b, v in zip(present, row):
                c = cv.get((w, b, n), {}).get("cpu_ns")
                cells.append(fmt_ns(v) + (" ±%.0f%%" % (100 * c) if c is not None and c >= 0.10 else ""))
            out.append("| %s | %s |" % (w, " | ".join(cells)))
    out.append("\n(±: coefficient of variation over the repetitions, shown when 10% or more.)\n")
    for w, title in (("concurrent", "1 writer + 2 readers: operations per second per thread (median)"),
                     ("concurrent_paced", "1 writer paced at 20k puts/s + 2 readers: operations per second per thread (median)")):
        rows = [b for b in present if any((w, b, n) in med for n in sizes)]
        if not rows:
            continue
        out.append("\n#### %s\n" % title)
        out.append("| backend | " + " | ".join("%s readers | %s writer" % (size_label(n), size_label(n)) for n in sizes) + " |")
        out.append("|---|" + "---:|---:|" * len(sizes))
        for b in rows:
            cells = []
            for n in sizes:
                e = med.get((w, b, n), {})
                cells += [fmt_rate(e.get("reader_ops_per_s")), fmt_rate(e.get("writer_ops_per_s"))]
            out.append("| %s | %s |" % (b, " | ".join(cells)))
    out.append("\n#### Heap bytes per entry beyond the 116 raw key+value bytes (mallinfo2 delta while loading)\n")
    out.append("| backend | " + " | ".join(size_label(n) for n in sizes) + " |")
    out.append("|---|" + "---:|" * len(sizes))
    for b in ("memory", "map"):
        cells = []
        for n in sizes:
            e = med.get(("footprint", b, n), {})
            cells.append("%.1f" % e["bytes_per_entry"] if "bytes_per_entry" in e else "-")
        out.append("| %s | %s |" % (b, " | ".join(cells)))
    return "\n".join(out)


def targets(med, sizes):
    """Each target: (description, measured text, verdict)."""
    rows = []
    big, small = max(sizes), min(sizes)

    def t(w, b, n, field="cpu_ns"):
        return med.get((w, b, n), {}).get(field)

    def add(desc, value, ok, fmt="%.2fx"):
        if value is None:
            rows.append((desc, "not measured", "-"))
        else:
            rows.append((desc, fmt % value, "met" if ok(value) else "**not met**"))

    def ratio(w, ours, theirs, n, field="cpu_ns"):
        o, r = t(w, ours, n, field), t(w, theirs, n, field)
        return o / r if o and r else None

    # Issue 15: memory writes and reads at LMDB's level.
    add("memory put at most 1.0x lmdb, 1M (time ratio)", ratio("put", "memory", "lmdb", 1000000), lambda r: r <= 1.0)
    for n in sizes:
        limit = 1.3 if n >= 1000000 else 1.5
        add("memory put at most %.1fx map, %s (time ratio)" % (limit, size_label(n)), ratio("put", "memory", "map", n),
            lambda r, limit=limit: r <= limit)
    for n in sizes:
        add("memory batch100 at most 1.0x map, %s (time ratio)" % size_label(n), ratio("batch100", "memory", "map", n),
            lambda r: r <= 1.0)
    add("memory get_hit at most 1.0x lmdb, 1M (time ratio)", ratio("get_hit", "memory", "lmdb", 1000000),
        lambda r: r <= 1.0)
    for n in sizes:
        add("memory get_hit faster than map, %s (time ratio)" % size_label(n), ratio("get_hit", "memory", "map", n),
            lambda r: r < 1.0)
    a, b = t("snapshot", "memory", big), t("snapshot", "memory", small)
    add("memory snapshot at %s within 1.2x of %s" % (size_label(big), size_label(small)),
        a / b if a and b else None, lambda r: r <= 1.2)
    for n in sizes:
        add("memory bytes/entry at most 0.5x map, %s (memory / map)" % size_label(n),
            ratio("footprint", "memory", "map", n, "bytes_per_entry"), lambda r: r <= 0.5)
    for n in sizes:
        if n < 100000:
            continue
        add("1 writer + 2 readers, unthrottled, %s: memory readers / map readers >= 1.0" % size_label(n),
            ratio("concurrent", "memory", "map", n, "reader_ops_per_s"), lambda r: r >= 1.0)
        add("1 writer + 2 readers, unthrottled, %s: memory writer / map writer >= 10" % size_label(n),
            ratio("concurrent", "memory", "map", n, "writer_ops_per_s"), lambda r: r >= 10.0)
    for n in sizes:
        add("any_store scan1000 at most 1.03x the memory basic_store, %s" % size_label(n),
            ratio("scan1000", "any_memory", "memory", n), lambda r: r <= 1.03)
    # Issue 15: DefaultTuning against RocksDB's own defaults (raw RocksDB), 1M keys.
    for w, limit in (("get_miss", 0.5), ("get_hit", 1.0), ("put", 1.03), ("scan1000", 1.03)):
        add("DefaultTuning vs raw RocksDB with its defaults, %s 1M: at most %.2fx" % (w, limit),
            ratio(w, "rocks_default", "raw_defaults", 1000000), lambda r, limit=limit: r <= limit)
    # keel's own layer over RocksDB, same options on both sides.
    for w, limit in (("get_hit", 1.03), ("put", 1.03), ("scan1000", 1.05)):
        for n in sizes:
            add("basic_store<RocksPolicy<DefaultTuning>> vs raw RocksDB (same options), %s %s: at most %.2fx" % (
                w, size_label(n), limit), ratio(w, "rocks_default", "raw_rocks", n), lambda r, limit=limit: r <= limit)
    for w in ("get_hit", "put", "scan1000"):
        for n in sizes:
            add("any_store vs the basic_store it holds (RocksDB), %s %s: within 3%% (time ratio)" % (w, size_label(n)),
                ratio(w, "any_rocks", "rocks_default", n), lambda x: x <= 1.03)
    lines = ["| target | measured | verdict |", "|---|---:|---|"]
    lines += ["| %s | %s | %s |" % r for r in rows]
    return "\n".join(lines)


# One colour and one marker per series, the same in every chart. Related
# series share a colour family only loosely: every colour and every marker
# differs, so that no two series can be mistaken (tab10 has 10 colours for 12
# series; black and dark goldenrod are the 11th and 12th).
STYLE = {
    "memory":         ("tab:blue", "o"),
    "any_memory":     ("tab:cyan", "s"),
    "virtual_memory": ("tab:green", "^"),
    "map":            ("tab:red", "X"),
    "lmdb":           ("tab:purple", "D"),
    "rocks_default":  ("tab:orange", "P"),
    "any_rocks":      ("tab:brown", "v"),
    "virtual_rocks":  ("tab:pink", "<"),
    "rocks_macos":    ("tab:olive", ">"),
    "raw_rocks":      ("tab:gray", "*"),
    "raw_defaults":   ("black", "h"),
    "raw_memenv":     ("darkgoldenrod", "p"),
}
# The snapshot chart: one line per backend (keel's two, and the baselines that
# are other designs); the adapters over the same backend (any_*, virtual_*,
# rocks_macos, raw_defaults, raw_memenv) cost the same and are in the tables.
SNAPSHOT_SERIES = ["memory", "rocks_default", "raw_rocks", "lmdb", "map"]


def style(b):
    colour, marker = STYLE[b]
    return {"color": colour, "marker": marker}


def dot_groups(ax, groups, present, value, markersize=7):
    """One column of markers per group (a workload or a size), one marker per
    series at a small offset, so that equal values stay visible side by side.
    value(group, backend) -> number or None (not measured: no marker)."""
    width = 0.8 / max(len(present), 1)
    for i, b in enumerate(present):
        xs, ys = [], []
        for g, group in enumerate(groups):
            v = value(group, b)
            if v:
                xs.append(g - 0.4 + width / 2 + i * width)
                ys.append(v)
        ax.plot(xs, ys, linestyle="none", markersize=markersize, markeredgecolor="black",
                markeredgewidth=0.4, label=b, **style(b))
    for g in range(1, len(groups)):
        ax.axvline(g - 0.5, color="0.85", linewidth=0.8)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_xticks(range(len(groups)))


def charts(med, sizes, docs):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib missing; no charts", file=sys.stderr)
        return []
    made = []
    present = [b for b in BACKENDS if any(k[1] == b for k in med)]
    point = ["get_hit", "get_miss", "put", "scan1000", "snapshot", "snapshot_get"]
    for n in sizes:
        fig, ax = plt.subplots(figsize=(13, 5.5))
        dot_groups(ax, point, present, lambda w, b: med.get((w, b, n), {}).get("cpu_ns"))
        ax.set_xticklabels(point)
        ax.set_yscale("log")
        ax.set_ylabel("ns per operation (median CPU time, log scale; lower is better)")
        ax.set_title("keel backends and baselines, %s keys (16 B keys, 100 B values)" % size_label(n))
        ax.legend(ncol=6, fontsize=8, loc="upper left")
        ax.grid(axis="y", which="both", alpha=0.3)
        name = "bench-ops-%s.png" % size_label(n)
        fig.tight_layout()
        fig.savefig(os.path.join(docs, name), dpi=90)
        plt.close(fig)
        made.append((name, "time per operation, %s keys" % size_label(n)))
    # Concurrent readers / writer.
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, field, title in ((axes[0], "reader_ops_per_s", "each of 2 readers (get)"),
                             (axes[1], "writer_ops_per_s", "the writer (put)")):
        dot_groups(ax, sizes, present, lambda n, b: med.get(("concurrent", b, n), {}).get(field))
        ax.set_xticklabels([size_label(n) + " keys" for n in sizes])
        ax.set_yscale("log")
        ax.set_ylabel("ops/s per thread (higher is better)")
        ax.set_title("1 writer + 2 readers: " + title)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(docs, "bench-concurrent.png"), dpi=90)
    plt.close(fig)
    made.append(("bench-concurrent.png", "1 writer + 2 readers"))
    # Snapshot cost against store size: flat for keel's backends (a snapshot
    # pins a version, whatever the size), a straight rising line for the map
    # baseline (it copies the map).
    fig, ax = plt.subplots(figsize=(8, 5))
    for b in SNAPSHOT_SERIES:
        xs = [n for n in sizes if (("snapshot", b, n) in med)]
        if xs:
            ax.plot(xs, [med[("snapshot", b, n)]["cpu_ns"] for n in xs], markersize=8,
                    markeredgecolor="black", markeredgewidth=0.4, label=b, **style(b))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_label(n) for n in sizes])
    ax.set_xlabel("keys in the store (log scale)")
    ax.set_ylabel("ns per snapshot, create + release (log scale)")
    ax.set_title("Snapshot cost against store size, one line per backend")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(docs, "bench-snapshot.png"), dpi=90)
    plt.close(fig)
    made.append(("bench-snapshot.png", "snapshot cost against store size, one line per backend"))
    return made


SKELETON = """# keel benchmarks

Run them with `bash bench/run.sh` (`--quick` for 10k and 100k keys only).

%s
%s
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("extra", nargs="*")
    ap.add_argument("--docs", default="docs")
    args = ap.parse_args()
    data, med, cv = load(args.json)
    for extra in args.extra:
        _, m2, c2 = load(extra)
        med.update(m2)
        cv.update(c2)
    sizes = sorted({k[2] for k in med})
    os.makedirs(args.docs, exist_ok=True)
    pngs = charts(med, sizes, args.docs)
    ctx = data.get("context", {})
    gen = [BEGIN, "",
           "### Machine and run", "", machine(ctx), "",
           "Results: `%s`." % "`, `".join(os.path.relpath(p, os.path.join(args.docs, "..")) for p in [args.json] + args.extra), "",
           "### Targets (computed from this run)", "", targets(med, sizes), "",
           "### Results", tables(med, cv, sizes), "",
           "### Charts", ""]
    gen += ["![%s](%s)" % (alt, name) for name, alt in pngs]
    gen += ["", END]
    gen = "\n".join(gen)
    path = os.path.join(args.docs, "benchmarks.md")
    if os.path.exists(path):
        text = open(path).read()
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + gen + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n" + gen + "\n"
    else:
        text = SKELETON % (gen, "")
    with open(path, "w") as f:
        f.write(text)
    print("report.py: wrote %s and %d charts" % (path, len(pngs)), file=sys.stderr)


if __name__ == "__main__":
    main()
