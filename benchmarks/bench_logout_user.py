"""`logout_all_users --user NAME` on a user with 10 sessions among many (issue 22): prints the purge
work (finding the user's indexed sessions, deleting each by key through the SessionStore, deleting the
rows) next to its target, then checks storage: exactly those 10 sessions and rows gone, nothing else.

A figure, not a timed test. On a throwaway SQLite database (or DATABASE_URL given with --database-url):

    .venv/bin/python -m benchmarks.bench_logout_user -n 1000000 --runs 3
"""
import argparse
import os
import statistics
import sys
import tempfile

TARGET_MS = 50.0
SESSIONS_OF_THE_USER = 10


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="sessions in the store (default 200000)")
    parser.add_argument("--users", type=int, default=20_000, help="users owning them (default 20000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp folder")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench-logout-user-")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{folder}/db.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lcstats.settings")
    os.environ["SESSION_ENGINE"] = "db"
    import django

    django.setup()
    from django.contrib.sessions.models import Session
    from django.core.management import call_command

    from benchmarks.fill import one_user_among
    from students import session_index
    from students.models import SessionOwner

    call_command("migrate", verbosity=0)
    figures = []
    for run in range(args.runs):
        theirs = one_user_among(args.n, args.users, SESSIONS_OF_THE_USER)
        ended = session_index.log_out_users(["target"])
        left = Session.objects.count()
        gone = not Session.objects.filter(session_key__in=theirs).exists()
        rows_left = SessionOwner.objects.count()
        ok = ended.sessions == SESSIONS_OF_THE_USER and gone and left == rows_left == args.n - SESSIONS_OF_THE_USER
        print(f"run {run + 1}: purge work {ended.purge_ms:.1f} ms for {ended.sessions} session(s) among {args.n}"
              f" (store checked: {'exactly those gone' if ok else 'WRONG'})")
        if not ok:
            sys.exit(1)
        figures.append(ended.purge_ms)
    median = statistics.median(figures)
    print(f"--user purge work, median of {args.runs}: {median:.1f} ms (target: under {TARGET_MS:.0f} ms) "
          f"{'OK' if median < TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
