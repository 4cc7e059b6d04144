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

    .venv/bin/python scripts/bench_login_index.py --backend sqlite --logins 100
    .venv/bin/python scripts/bench_login_index.py --backend postgres   # a throw-away PostgreSQL
    (backends: sqlite, postgres, file, cache-redis, cached_db-redis; PostgreSQL and Redis from tests/servers.py)
"""
import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.05  # login p50 and p99 with the index within 5% of without
ENGINES = {"sqlite": "db", "postgres": "db", "file": "file", "cache-redis": "cache", "cached_db-redis": "cached_db"}
PASSWORD = "Bench-login-index-42"
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def configure(backend, stack, folder):
    """Environment for lcstats.settings (before django.setup()): the backend's servers, throw-away."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import servers  # tests/servers.py: the throw-away PostgreSQL and Redis the tests use

    os.environ["DJANGO_SETTINGS_MODULE"] = "lcstats.settings"
    os.environ["DATABASE_URL"] = (stack.enter_context(servers.postgres()) if backend == "postgres"
                                  else f"sqlite:///{folder}/db.sqlite3")
    os.environ["CACHE_URL"] = stack.enter_context(servers.redis()) if backend.endswith("-redis") else "locmem://"
    os.environ["SESSION_ENGINE"] = ENGINES[backend]
    os.environ["SESSION_FILE_PATH"] = str(folder)
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-secret-key-" + "x" * 40)
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")


class IndexSwitch:
    """Turns the index's login-path code on and off: the row-writing receiver and the middleware's
    key-change hook (both can run at a login, which cycles the session key). While on, it times them:
    spent_ms is what the index's own code took since the last reset, a figure the machine's noise
    (other processes on a shared CPU) touches far less than two logins' difference."""

    def __init__(self):
        from students import session_index

        self.module, self.record, self.follow = session_index, session_index.record_login, session_index.follow_new_key
        self.uid = "students.session_index.record_login"
        self.spent_ms = 0.0

    def _timed(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent_ms += (time.perf_counter() - start) * 1000
        return timed

    def __call__(self, on):
        from django.contrib.auth.signals import user_logged_in

        user_logged_in.disconnect(dispatch_uid=self.uid)  # each login checks a row is written iff on
        if on:
            user_logged_in.connect(self._timed(self.record), dispatch_uid=self.uid, weak=False)
            self.module.follow_new_key = self._timed(self.follow)
        else:
            self.module.follow_new_key = lambda request, old_key: None


def one_login(username, indexed, switch):
    """One login POST through the whole stack; returns (ms, queries, ms in the index's code). Exits if
    it did not sign in."""
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from importlib import import_module

    from students.models import SessionOwner

    client = Client(HTTP_USER_AGENT=USER_AGENT)
    client.get("/accounts/login/")  # the form first, as a browser does (its anonymous session, if any)
    switch.spent_ms = 0.0
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
        ms = (time.perf_counter() - start) * 1000
    key = client.cookies[settings.SESSION_COOKIE_NAME].value if settings.SESSION_COOKIE_NAME in client.cookies else ""
    stored = import_module(settings.SESSION_ENGINE).SessionStore().exists(key) if key else False
    has_row = SessionOwner.objects.filter(session_key=key).exists()
    if response.status_code != 302 or not stored or has_row != indexed:
        sys.exit(f"login of {username} ({'with' if indexed else 'without'} the index) went wrong: "
                 f"status {response.status_code}, in storage {stored}, row {has_row}")
    return ms, len(queries), switch.spent_ms


def measure(pairs, users, switch):
    """`pairs` logins each way, alternating; returns {True: [(ms, queries, index ms)], False: [...]}."""
    figures = {True: [], False: []}
    for i in range(pairs):
        for indexed in ((True, False) if i % 2 == 0 else (False, True)):
            switch(indexed)
            figures[indexed].append(one_login(users[i % len(users)], indexed, switch))
    switch(True)
    return figures


def report(label, figures, judged):
    """Print the figures; judged: compare with the target (a real login, the site's hasher), or only
    show the index's share of the rest of a login's work (the fast hasher)."""
    with_ms, without_ms = ([f[0] for f in figures[side]] for side in (True, False))
    index_ms = [f[2] for f in figures[True]]
    queries = {side: statistics.median(f[1] for f in figures[side]) for side in (True, False)}
    ok = True
    print(f"{label}: {len(with_ms)} logins each way")
    for name, q in (("p50", 50), ("p99", 99)):
        a, b, own = percentile(with_ms, q), percentile(without_ms, q), percentile(index_ms, q)
        ratio = a / b
        ok &= ratio <= TARGET_RATIO or not judged
        verdict = (f"(target: at most {TARGET_RATIO:.2f}x) {'OK' if ratio <= TARGET_RATIO else 'MISSED'}"
                   if judged else "(no target: the login without its hasher)")
        print(f"  login {name}: {a:7.1f} ms with the index, {b:7.1f} ms without: {ratio:.3f}x {verdict}; "
              f"the index's own code {own:.2f} ms = {own / b:.1%} of that login without it")
    mean_added = statistics.mean(with_ms) - statistics.mean(without_ms)
    print(f"  mean added per login: {mean_added:+.2f} ms measured, {statistics.mean(index_ms):.2f} ms in the "
          f"index's code; queries per login POST: {queries[True]:.0f} with, {queries[False]:.0f} without")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=ENGINES, default="sqlite")
    parser.add_argument("--logins", type=int, default=100, help="logins each way with the site's hasher (default 100)")
    parser.add_argument("--fast-logins", type=int, default=500, help="logins each way with MD5 (default 500)")
    parser.add_argument("--rows", type=int, default=100_000, help="index rows already there (default 100000)")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-login-index-"))
        configure(args.backend, stack, folder)
        import django

        django.setup()
        from django.contrib.auth.hashers import get_hasher
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test.utils import override_settings, setup_test_environment
        from django.utils import timezone

        from students.models import SessionOwner

        setup_test_environment()  # the test Client's hooks; keeps the site's own PASSWORD_HASHERS
        call_command("migrate", verbosity=0)
        usernames = [f"student{i}" for i in range(20)]
        now = timezone.now()
        SessionOwner.objects.bulk_create(  # an index with other users' rows in it, as on a live site
            [SessionOwner(session_key=f"{i:032x}", user_id=str(100_000 + i % 5000), logged_in_at=now)
             for i in range(args.rows)], batch_size=5000)
        switch = IndexSwitch()
        switch(True)
        ok = True
        for label, hashers, pairs in (("site's hasher", None, args.logins),
                                      ("fast hasher (MD5)", ["django.contrib.auth.hashers.MD5PasswordHasher"],
                                       args.fast_logins)):
            if not pairs:
                continue
            with override_settings(**({"PASSWORD_HASHERS": hashers} if hashers else {})):  # clears hasher caches
                User.objects.filter(username__in=usernames).delete()
                users = [User.objects.create_user(name, password=PASSWORD).username for name in usernames]
                for _ in range(2):  # warm: imports, connections, caches
                    one_login(users[0], True, switch)
                ok &= report(f"{args.backend}, {ENGINES[args.backend]} engine, {label} ({get_hasher().algorithm}), "
                             f"{args.rows} other rows", measure(pairs, users, switch), judged=not hashers)
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = float("nan")
        print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPU(s); Python "
              f"{platform.python_version()}, Django {django.get_version()}, {platform.platform()}")
        print("command: .venv/bin/python scripts/bench_login_index.py " + " ".join(sys.argv[1:]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
