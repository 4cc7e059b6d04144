"""A real `manage.py logout_all_users` run against a throw-away PostgreSQL database, for the fault
tests: a fresh migrated database full of sessions, the run as a process (tests.support.fault_settings
pauses it after every purge batch), and direct looks at the database while it works."""
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import psycopg

from tests.support import REPO_DIR

SESSIONS = 400  # fat rows, a few per 8 kB block: about a hundred purge batches


def sql(url, query, params=()):
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(query, params)
        return cursor.fetchall() if cursor.description else None


@contextmanager
def site_database(server_url):
    """A fresh, migrated database with SESSIONS logged-in-looking sessions; yields its direct URL."""
    name = f"faults_{secrets.token_hex(4)}"
    sql(server_url, f"CREATE DATABASE {name}")
    url = urlsplit(server_url)._replace(path=f"/{name}").geturl()
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_DIR, check=True,
                       env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "lcstats.settings"})
        sql(url, "INSERT INTO django_session (session_key, session_data, expire_date) "
                 "SELECT md5(i::text || random()::text), repeat('x', 1500), now() + interval '1 day' "
                 "FROM generate_series(1, %s) AS i", [SESSIONS])
        yield url
    finally:
        with suppress(psycopg.OperationalError):  # a test that stopped the server leaves nothing to drop
            sql(server_url, f"DROP DATABASE {name} WITH (FORCE)")


def command_env(url, pause=0.0, lease=60, **site):
    """The environment of a run (or of the site: `site` overrides, e.g. SESSION_ENGINE, CACHE_URL)."""
    return {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.support.fault_settings",
            "FAULT_PAUSE_SECONDS": str(pause), "LOGOUT_LOCK_LEASE_SECONDS": str(lease),
            "SESSION_ENGINE": "db", "CACHE_URL": "locmem://", "DJANGO_LOG_LEVEL": "WARNING", **site}


def logout(url, *args, pause=0.0, lease=60, wait=True, batch_size=1, **site):
    argv = [sys.executable, "manage.py", "logout_all_users", "--batch-size", str(batch_size), *args]
    env = command_env(url, pause, lease, **site)
    if not wait:
        return subprocess.Popen(argv, cwd=REPO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=120)


def sessions_left(direct):
    return sql(direct, "SELECT count(*) FROM django_session")[0][0]


def wait_until_purging(direct, run):
    """Until the run is recorded as running (so it holds the lock) and has deleted sessions."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run ended early: {run.communicate()}"
        running = sql(direct, "SELECT count(*) FROM students_logoutrun WHERE outcome = 'running'")[0][0]
        if running and sessions_left(direct) < SESSIONS:
            return
        time.sleep(0.05)
    raise AssertionError("the run never started purging")


def outcomes(direct):
    return [row[0] for row in sql(direct, "SELECT outcome FROM students_logoutrun ORDER BY id")]
