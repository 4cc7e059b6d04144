"""Does the site stay up while `logout_all_users` purges a million sessions on PostgreSQL?

Fills PostgreSQL with N sessions (the same mix as bench_logout: benchmarks.fill), starts the real site
(`manage.py runserver --noreload`, multi-threaded) and a small, bounded load: a few client threads on
loopback, each logging in, viewing pages, logging out, with think time between requests. After an idle
phase it runs `manage.py logout_all_users` as its own process (as cron would) and keeps the load on until
a few seconds after the purge ends; then everything stops by itself. It reports p50/p99 latency and
errors for requests that overlapped the purge and for the idle phase before it.

    .venv/bin/python -m benchmarks.bench_site_up -n 1000000 --doc docs/benchmarks.md

A redirect to the login page after the purge is the purge working, not an error: the client logs in
again. Errors are: connection failures, timeouts, 4xx/5xx, or a login that does not sign in.

With --schedule it runs no purge; it measures page views in three phases of --phase-seconds each on
one server: no schedule recorded; a recorded schedule whose clock cutoff is in force (every signed-in
request compares against it); and `--scheduler none`, the site cleaning session storage itself,
with its interval shortened to --cleanup-every seconds so turns really happen while it is measured.

    .venv/bin/python -m benchmarks.bench_site_up --schedule -n 100000 --phase-seconds 30 --doc docs/benchmarks.md
"""
import argparse
import contextlib
import shlex
import sys

from benchmarks.fill import BENCH_PASSWORD, Fill
from benchmarks.report import render_site_schedule, render_site_up, versions, write_doc
from benchmarks.site_load import MAX_THREADS, Load, password_check_ms, purge_under_load, schedule_phases, start_site
from benchmarks.stores import PostgresTarget, configure, count_sessions


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1_000_000, help="sessions to fill (default 1000000)")
    p.add_argument("--threads", type=int, default=2, help=f"client threads (max {MAX_THREADS})")
    p.add_argument("--think", type=float, default=0.05, help="seconds between one client's requests")
    p.add_argument("--views-per-login", type=int, default=20)
    p.add_argument("--idle-seconds", type=float, default=20, help="load before the purge starts")
    p.add_argument("--after-seconds", type=float, default=5, help="load after the purge ends")
    p.add_argument("--max-seconds", type=float, default=600, help="hard stop for the whole load phase")
    p.add_argument("--doc", help="write the result into this markdown file (e.g. docs/benchmarks.md)")
    p.add_argument("--schedule", action="store_true",
                   help="no purge: page views without a schedule, with one, and with the no-scheduler cleanup")
    p.add_argument("--phase-seconds", type=float, default=30, help="with --schedule: length of each phase")
    p.add_argument("--rounds", type=int, default=3, help="with --schedule: times the three phases are repeated")
    p.add_argument("--cleanup-every", type=float, default=2,
                   help="with --schedule: the cleanup interval in the last phase, in seconds (real: 600)")
    args = p.parse_args()
    if not 1 <= args.threads <= MAX_THREADS or args.n < 1:
        p.error(f"--threads must be 1..{MAX_THREADS} and -n >= 1")
    command = " ".join([".venv/bin/python -m benchmarks.bench_site_up", *map(shlex.quote, sys.argv[1:])])

    from tests.support import servers  # the throw-away PostgreSQL the tests use

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(servers.postgres())
        configure("postgres", url, "locmem://")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        fill = Fill(args.n)
        fill.generate()
        PostgresTarget(url).load_once(fill)
        info = versions("locmem://")
        students = [f"student{i:07d}" for i in range(args.threads)]

        port = servers.free_port()
        start_site(stack, port, args.cleanup_every if args.schedule else None)
        load = Load(stack, port, students, args.views_per_login, args.think, args.max_seconds)
        if args.schedule:
            phases = schedule_phases(load, args.rounds, args.phase_seconds)
            load.end()
            text = render_site_schedule(args, command, info, phases, load.rows, load.relogins)
            print(text)
            if args.doc:
                write_doc(args.doc, "site-up-schedule", text)
            return
        purge_start, purge_end, purge = purge_under_load(load, args.idle_seconds, args.after_seconds)
        left = count_sessions()
        check_ms, hasher = password_check_ms(BENCH_PASSWORD)  # on a quiet machine again

    if purge.returncode != 0:
        print(purge.stderr, file=sys.stderr)
        sys.exit(f"logout_all_users failed with exit code {purge.returncode}")
    text = render_site_up(args, command, info, load.rows, load.relogins, purge_start, purge_end, purge.stdout, left,
                          check_ms, hasher)
    print(text)
    if args.doc:
        write_doc(args.doc, "site-up", text)


if __name__ == "__main__":
    main()
