"""Timing logins with the ownership index's code path and without it (bench_login_index): the site
configured on throw-away servers, the index's login-path code switched on and off, one login POST
through Django's whole stack, and logins alternating between the two.
"""
import sys
import time

from benchmarks.stores import configure

PASSWORD = "Bench-login-index-42"
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
USERNAMES = [f"student{i}" for i in range(20)]


def configure_site(backend, stack, folder):
    """Environment for lcstats.settings (before django.setup()): the backend's servers, throw-away."""
    from tests.support import servers  # the throw-away PostgreSQL and Redis the tests use

    database_url = stack.enter_context(servers.postgres()) if backend == "postgres" else f"sqlite:///{folder}/db.sqlite3"
    cache_url = stack.enter_context(servers.redis()) if backend.endswith("-redis") else "locmem://"
    configure(backend, database_url, cache_url, folder)


def prepare(rows):
    """The test Client's hooks, the tables, and an index with `rows` other users' rows in it, as on a
    live site. Returns the index's switch, turned on."""
    from django.core.management import call_command
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from students.models import SessionOwner

    setup_test_environment()  # the test Client's hooks; keeps the site's own PASSWORD_HASHERS
    call_command("migrate", verbosity=0)
    now = timezone.now()
    SessionOwner.objects.bulk_create(
        [SessionOwner(session_key=f"{i:032x}", user_id=str(100_000 + i % 5000), logged_in_at=now)
         for i in range(rows)], batch_size=5000)
    switch = IndexSwitch()
    switch(True)
    return switch


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


def timed_pass(hashers, pairs, switch):
    """`pairs` logins each way with these PASSWORD_HASHERS (None: the site's own), after two to warm up.
    Returns (the hasher's algorithm, measure()'s figures)."""
    from django.contrib.auth.hashers import get_hasher
    from django.contrib.auth.models import User
    from django.test.utils import override_settings

    with override_settings(**({"PASSWORD_HASHERS": hashers} if hashers else {})):  # clears hasher caches
        User.objects.filter(username__in=USERNAMES).delete()
        users = [User.objects.create_user(name, password=PASSWORD).username for name in USERNAMES]
        for _ in range(2):  # warm: imports, connections, caches
            one_login(users[0], True, switch)
        return get_hasher().algorithm, measure(pairs, users, switch)
