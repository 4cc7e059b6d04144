"""`logout_all_users --user NAME` on a user with 10 sessions among many (issue 22): prints the purge
work (finding the user's indexed sessions, deleting each by key through the SessionStore, deleting the
rows) next to its target, then checks storage: exactly those 10 sessions and rows gone, nothing else.

A figure, not a timed test. On a throwaway SQLite database (or DATABASE_URL given with --database-url):

    .venv/bin/python scripts/bench_logout_user.py -n 1000000 --runs 3
"""
import argparse
import os
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

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
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.utils import timezone

    from students import session_index
    from students.models import SessionOwner

    call_command("migrate", verbosity=0)
    figures = []
    for run in range(args.runs):
        Session.objects.all().delete()
        SessionOwner.objects.all().delete()
        User.objects.all().delete()
        User.objects.bulk_create([User(username=f"u{i}") for i in range(args.users)], batch_size=5000)
        ids = list(User.objects.order_by("pk").values_list("pk", flat=True))
        target = User.objects.create(username="target")
        now = timezone.now()
        expire = now + timedelta(days=14)
        store = SessionStore()
        owners = [target.pk] * SESSIONS_OF_THE_USER + [ids[i % len(ids)] for i in range(args.n - SESSIONS_OF_THE_USER)]
        for start in range(0, len(owners), 10_000):
            chunk = owners[start:start + 10_000]
            keys = [store._get_new_session_key() for _ in chunk]
            Session.objects.bulk_create(
                [Session(session_key=k, session_data=store.encode({"_auth_user_id": str(u)}), expire_date=expire)
                 for k, u in zip(keys, chunk)])
            SessionOwner.objects.bulk_create(
                [SessionOwner(session_key=k, user_id=str(u), logged_in_at=now) for k, u in zip(keys, chunk)])
        theirs = set(SessionOwner.objects.filter(user_id=str(target.pk)).values_list("session_key", flat=True))
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
