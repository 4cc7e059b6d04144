"""The cost curve: the floor and `logout_all_users` on every session engine at growing N, in one table.

It runs benchmarks.bench_logout (approaches floor and ours) once per engine and size, each run with
its own fill and servers, and puts the medians side by side with the cost per session in microseconds,
so a reader sees whether the cost grows linearly (the per-session cost stays flat) and where ours
drifts from its floor. --doc writes the table into docs/benchmarks.md between <!-- bench:curve -->
markers.

    .venv/bin/python -m benchmarks.bench_curve --doc docs/benchmarks.md

The file engine runs at its own sizes (--file-sizes): a million files is not what that engine is for.
"""
import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import render_curve, write_doc

BACKENDS = ["sqlite", "postgres", "cached_db-redis", "cache-redis", "file"]


def sizes(text):
    values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of sizes >= 1")
    return values


def run(backend, n, runs, workdir):
    """One bench_logout run (floor and ours); returns its JSON figures. Its progress goes to stderr."""
    out = Path(workdir) / f"{backend}-{n}.json"
    command = [sys.executable, "-m", "benchmarks.bench_logout", "--backend", backend, "-n", str(n),
               "--runs", str(runs), "--approaches", "floor,ours", "--json", str(out)]
    print(f"== {backend}, N = {n:,}", file=sys.stderr, flush=True)
    result = subprocess.run(command, stdout=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"benchmarks.bench_logout failed (exit {result.returncode}) for {backend} at N = {n:,}: "
                         "it printed why above")
    return json.loads(out.read_text())


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
    command = " ".join([".venv/bin/python -m benchmarks.bench_curve", *map(shlex.quote, sys.argv[1:])])

    with tempfile.TemporaryDirectory(prefix="bench-curve-") as workdir:
        figures = [run(b, n, args.runs, workdir)
                   for b in backends for n in (args.file_sizes if b == "file" else args.sizes)]
    text = render_curve(figures, command, args.runs)
    print(text)
    if args.doc:
        write_doc(args.doc, "curve", text)
    return 0 if all(f["results"][a]["ok"] for f in figures for a in ("floor", "ours")) else 1


if __name__ == "__main__":
    sys.exit(main())
