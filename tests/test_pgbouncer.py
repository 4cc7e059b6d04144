"""The cluster lock behind PgBouncer (Debian's pgbouncer between the command and a throw-away
PostgreSQL), in transaction and in session pooling: two runs at once give one purge, a finished
run leaves no lock behind, and a run killed with kill -9 mid-purge does not block the next one
beyond its lease. A session-level advisory lock fails here in transaction pooling: the lock stays
on a pooled server connection and another client's statements can land on that connection.

The runs are real `manage.py logout_all_users` processes; tests.fault_settings only adds a pause
after every purge batch so that a second run, or kill -9, lands while the first is purging."""
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.pgbouncer_server import pgbouncer

REPO_DIR = Path(__file__).resolve().parent.parent
SESSIONS = 400  # fat rows, a few per 8 kB block: about a hundred purge batches


def sql(url, query, params=()):
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(query, params)
        return cursor.fetchall() if cursor.description else None


@contextmanager
def site_database(server_url):
    """A fresh, migrated database with SESSIONS logged-in-looking sessions; yields its direct URL."""
    name = f"bouncer_{secrets.token_hex(4)}"
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
        sql(server_url, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["transaction", "session"])
def bounced(request, postgres_server):
    """(direct URL, URL through PgBouncer) of a fresh site database, in each pool mode."""
    with site_database(postgres_server) as direct, pgbouncer(direct, pool_mode=request.param) as through:
        yield direct, through


def command_env(url, pause=0.0, lease=60):
    return {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.fault_settings",
            "FAULT_PAUSE_SECONDS": str(pause), "LOGOUT_LOCK_LEASE_SECONDS": str(lease),
            "SESSION_ENGINE": "db", "CACHE_URL": "locmem://", "DJANGO_LOG_LEVEL": "WARNING"}


def logout(url, *args, pause=0.0, lease=60, wait=True):
    argv = [sys.executable, "manage.py", "logout_all_users", "--batch-size", "1", *args]
    env = command_env(url, pause, lease)
    if not wait:
        return subprocess.Popen(argv, cwd=REPO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=120)


def sessions_left(direct):
    return sql(direct, "SELECT count(*) FROM django_session")[0][0]


def wait_until_purging(direct, run):
    """Until the run is recorded as running (so it holds the lock) and has deleted some sessions."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run ended early: {run.communicate()}"
        running = sql(direct, "SELECT count(*) FROM students_logoutrun WHERE outcome = 'running'")[0][0]
        if running and 0 < sessions_left(direct) < SESSIONS:
            return
        time.sleep(0.05)
    raise AssertionError("the run never started purging")


def outcomes(direct):
    return [row[0] for row in sql(direct, "SELECT outcome FROM students_logoutrun ORDER BY id")]


def test_two_runs_at_once_give_one_purge_and_a_finished_run_leaves_no_lock(bounced):
    direct, through = bounced
    first = logout(through, pause=0.02, wait=False)
    wait_until_purging(direct, first)

    second = logout(through)

    assert second.returncode == 75, second
    assert second.stderr.startswith("CommandError: Another logout run holds the lock ("), second.stderr
    assert "Successfully" not in second.stdout
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert f"Successfully logged out all users by deleting {SESSIONS} session(s)" in out
    assert outcomes(direct) == ["success"]
    assert sessions_left(direct) == 0
    # No lock left behind: the lease row is gone and the next runs go ahead at once, again and again
    # (pooled server connections are reused in turn).
    assert sql(direct, "SELECT count(*) FROM students_runlease")[0][0] == 0
    for _ in range(4):
        again = logout(through)
        assert again.returncode == 0, again.stderr
    assert outcomes(direct) == ["success"] * 5


def test_a_run_killed_mid_purge_does_not_block_the_next(bounced):
    direct, through = bounced
    first = logout(through, pause=0.2, wait=False)
    wait_until_purging(direct, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert 0 < sessions_left(direct) < SESSIONS, "killed part-way through the purge"

    started = time.monotonic()
    second = logout(through)

    # Same host: the dead holder's process is gone, so its lease is taken over at once.
    assert second.returncode == 0, second.stderr
    assert time.monotonic() - started < 30
    assert "it ended without recording an outcome" in second.stderr
    assert outcomes(direct) == ["failed", "success"]
    assert sessions_left(direct) == 0


def test_a_dead_run_on_another_host_blocks_only_until_its_lease_expires(bounced):
    direct, through = bounced
    lease = 4
    first = logout(through, pause=0.2, lease=lease, wait=False)
    wait_until_purging(direct, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # As if the killed run had been on another host: its process cannot be looked up from here.
    sql(direct, "UPDATE students_runlease SET holder = 'web9.example:4242'")

    blocked = logout(through, lease=lease)
    assert blocked.returncode == 75, blocked.stderr
    assert "held by web9.example:4242" in blocked.stderr

    expires = sql(direct, "SELECT extract(epoch FROM expires_at - now()) FROM students_runlease")[0][0]
    assert 0 < expires <= lease
    time.sleep(float(expires) + 0.5)
    after = logout(through, lease=lease)
    assert after.returncode == 0, after.stderr
    assert outcomes(direct) == ["failed", "success"]
    assert sessions_left(direct) == 0
