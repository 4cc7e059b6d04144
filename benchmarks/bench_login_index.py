"""What the ownership index (issue 22) costs a login: login POST p50/p99 with the index's code path and
without it, next to the target (within 5%), and the queries each login makes either way.

Logins alternate, one with the index and one without (the order flipped every pair), in one process
through Django's full request stack (django.test.Client: every middleware, the login view, the
signals), so drift in a shared machine's load falls on both sides alike. "Without" disconnects the
user_logged_in receiver that writes the row and makes the middleware's key-change hook a no-op: the
site as it was before the index. Every login is checked (redirected, the session in storage, a row
with the index and none without).

Two passes: the site's own password hasher (what a login really costs; the hasher dominates it; the
target is judged on it, and the exit status is 1 if it is missed), and a fast hasher (MD5), which
leaves the rest of the login's work, so the index's share shows plainly.
A figure, not a timed test:

    .venv/bin/python -m benchmarks.bench_login_index --backend sqlite --logins 100
    .venv/bin/python -m benchmarks.bench_login_index --backend postgres   # a throw-away PostgreSQL
    (backends: sqlite, postgres, file, cache-redis, cached_db-redis; PostgreSQL and Redis from tests/support/servers.py)
"""
import argparse
import contextlib
import os
import platform
import sys
import tempfile

from benchmarks.login_timing import configure_site, prepare, timed_pass
from benchmarks.report import print_login_figures
from benchmarks.stores import ENGINES

PASSES = [("site's hasher", None), ("fast hasher (MD5)", ["django.contrib.auth.hashers.MD5PasswordHasher"])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=ENGINES, default="sqlite")
    parser.add_argument("--logins", type=int, default=100, help="logins each way with the site's hasher (default 100)")
    parser.add_argument("--fast-logins", type=int, default=500, help="logins each way with MD5 (default 500)")
    parser.add_argument("--rows", type=int, default=100_000, help="index rows already there (default 100000)")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-login-index-"))
        configure_site(args.backend, stack, folder)
        import django

        django.setup()
        switch = prepare(args.rows)
        ok = True
        for (label, hashers), pairs in zip(PASSES, (args.logins, args.fast_logins)):
            if not pairs:
                continue
            algorithm, figures = timed_pass(hashers, pairs, switch)
            ok &= print_login_figures(f"{args.backend}, {ENGINES[args.backend]} engine, {label} ({algorithm}), "
                                      f"{args.rows} other rows", figures, judged=not hashers)
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = float("nan")
        print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPU(s); Python "
              f"{platform.python_version()}, Django {django.get_version()}, {platform.platform()}")
        print("command: .venv/bin/python -m benchmarks.bench_login_index " + " ".join(sys.argv[1:]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
