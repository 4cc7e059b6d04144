#!/usr/bin/env python3
"""The cost curve: the floor and `logout_all_users` on every session engine at growing N, in one table.

It runs benchmarks/bench_logout.py (approaches floor and ours) once per engine and size, each run with
its own fill and servers, and puts the medians side by side with the cost per session in microseconds,
so a reader sees whether the cost grows linearly (the per-session cost stays flat) and where ours
drifts from its floor. --doc writes the table into docs/benchmarks.md between <!-- bench:curve -->
markers.

    .venv/bin/python benchmarks/bench_curve.py --doc docs/benchmarks.md

The file engine runs at its own sizes (--file-sizes): a million files is not what that engine is for.
"""
import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_logout  # noqa: E402 (the script next to this one: its header, versions and doc writer)

BACKENDS = ["sqlite", "postgres", "cached_db-redis", "cache-redis", "file"]
ENGINE_NAMES = {"sqlite": "db on SQLite", "postgres": "db on PostgreSQL",
                "cached_db-redis": "cached_db on PostgreSQL + Redis", "cache-redis": "cache on Redis",
                "file": "file"}


def sizes(text):
    values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of sizes >= 1")
    return values


def run(backend, n, runs, workdir):
    """One bench_logout run (floor and ours); returns its JSON figures. Its progress goes to stderr."""
    out = Path(workdir) / f"{backend}-{n}.json"
    command = [sys.executable, str(HERE / "bench_logout.py"), "--backend", backend, "-n", str(n),
               "--runs", str(runs), "--approaches", "floor,ours", "--json", str(out)]
    print(f"== {backend}, N = {n:,}", file=sys.stderr, flush=True)
    result = subprocess.run(command, stdout=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"bench_logout.py failed (exit {result.returncode}) for {backend} at N = {n:,}: "
                         "it printed why above")
    return json.loads(out.read_text())


def render(figures, command, runs):
    versions = {}
    for f in figures:
        versions.update(f["versions"])
    lines = [
        bench_logout.run_header(versions),
        "",
        f"Each engine's floor (see the approaches above) and `logout_all_users`, median of {runs} run(s) "
        "each, on a fresh fill of N sessions in the mix above (the cache engine: live ones only).",
        "",
        "| engine | N | floor | ours | x floor | floor µs/session | ours µs/session | sessions left (ours) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        floor, ours = f["results"]["floor"], f["results"]["ours"]
        left = f"{ours['left']:,}" + ("" if ours["ok"] and floor["ok"] else " WRONG")
        lines.append(
            f"| {ENGINE_NAMES[f['backend']]} | {f['n']:,} | {floor['median']:.3f} s | {ours['median']:.3f} s "
            f"| {ours['median'] / floor['median']:.2f}x | {floor['median'] / f['n'] * 1e6:.2f} "
            f"| {ours['median'] / f['n'] * 1e6:.2f} | {left} |")
    lines += ["", "Reproduce:", "", "```", command, "```"]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {','.join(BACKENDS)}")
    p.add_argument("--sizes", type=sizes, default=[10_000, 100_000, 1_000_000], help="N for every engine but file")
    p.add_argument("--file-sizes", type=sizes, default=[10_000, 100_000, 200_000], help="N for the file engine")
    p.add_argument("--runs", type=int, default=3, help="runs per approach and size; the median is reported")
    p.add_argument("--doc", help="write the table into this markdown file (e.g. docs/benchmarks.md)")
    args = p.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - set(BACKENDS) or args.runs < 1:
        p.error(f"unknown backends {sorted(set(backends) - set(BACKENDS))}" if set(backends) - set(BACKENDS)
                else "--runs must be >= 1")
    command = " ".join([".venv/bin/python benchmarks/bench_curve.py", *map(shlex.quote, sys.argv[1:])])

    with tempfile.TemporaryDirectory(prefix="bench-curve-") as workdir:
        figures = [run(b, n, args.runs, workdir)
                   for b in backends for n in (args.file_sizes if b == "file" else args.sizes)]
    text = render(figures, command, args.runs)
    print(text)
    if args.doc:
        bench_logout.write_doc(args.doc, "curve", text)
    return 0 if all(f["results"][a]["ok"] for f in figures for a in ("floor", "ours")) else 1


if __name__ == "__main__":
    sys.exit(main())
