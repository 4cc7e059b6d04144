"""Faults in the middle of a real run on PostgreSQL: the command killed with kill -9 part-way
through its purge, and the database lost part-way. Each run is a real `manage.py` process
(tests.faulty_run); the database is looked at directly, and the old cookie is tried on the site.

After each fault the next run must clean up: mark the dead run failed and say so, finish the
purge, and its cutoff must end every session that began before it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.faulty_run import (REPO_DIR, SESSIONS, command_env, logout, outcomes, sessions_left, site_database,
                              sql, wait_until_purging)
from tests.servers import PG_BIN, _as_postgres, postgres

PASSWORD = "a-long-test-password-42"
SIGN_IN = f"""
from django.contrib.auth import get_user_model
from django.test import Client
get_user_model().objects.create_user("alice", password="{PASSWORD}")
browser = Client()
answer = browser.post("/accounts/login/", {{"username": "alice", "password": "{PASSWORD}"}}, HTTP_HOST="localhost")
assert answer.status_code == 302, answer.status_code
print(browser.cookies["sessionid"].value)
"""
TRY_COOKIE = """
import sys
from django.test import Client
browser = Client()
browser.cookies["sessionid"] = sys.argv[-1]
answer = browser.get("/", HTTP_HOST="localhost")
print(answer.status_code, answer.get("Location", ""))
"""


def shell(url, code, *args):
    result = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", code, *args],
                            cwd=REPO_DIR, env=command_env(url), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def sign_in_alice(url):
    """A real login through the login form; returns the session cookie's value."""
    return shell(url, SIGN_IN)


def old_cookie_gets_the_login_page(url, key):
    status, location = shell(url, TRY_COOKIE.replace("sys.argv[-1]", repr(key))).split(" ", 1)
    return status == "302" and location.startswith("/accounts/login/")


def assert_every_old_session_ended(url, alice_key):
    """Storage first (before any request could let the cutoff hide a leftover), then the cookie."""
    started = sql(url, "SELECT started_at FROM students_logoutrun WHERE outcome = 'success'")[0][0]
    assert sessions_left(url) == 0, f"sessions older than the cutoff {started} are still stored"
    assert not sql(url, "SELECT 1 FROM django_session WHERE session_key = %s", [alice_key])
    assert old_cookie_gets_the_login_page(url, alice_key)


def test_a_run_killed_mid_purge_is_marked_abandoned_and_the_next_run_finishes(postgres_server):
    with site_database(postgres_server) as url:
        alice = sign_in_alice(url)
        first = logout(url, pause=0.2, wait=False)
        wait_until_purging(url, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert 0 < sessions_left(url) < SESSIONS + 1, "killed part-way through the purge"
        assert outcomes(url) == ["running"]

        second = logout(url)

        assert second.returncode == 0, second.stderr
        assert "Marked run 1 (started on" in second.stderr and "ended without recording an outcome" in second.stderr
        failed, done = sql(url, "SELECT outcome, error FROM students_logoutrun ORDER BY id")
        assert failed == ("failed", "abandoned: the run ended without recording an outcome")
        assert done[0] == "success"
        assert_every_old_session_ended(url, alice)


def _pg_ctl(data, *args):
    subprocess.run(_as_postgres([f"{PG_BIN}/pg_ctl", "-D", data, "-w", *args]), check=True, capture_output=True,
                   timeout=120)


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test's own, since the test stops it."""
    with postgres(settings=("fsync=off",)) as url:
        yield url


def test_the_database_lost_mid_run_says_what_was_done_and_the_next_run_marks_it_failed(own_server):
    with site_database(own_server) as url:
        alice = sign_in_alice(url)
        data = sql(url, "SHOW data_directory")[0][0]
        run = logout(url, pause=0.3, wait=False)
        wait_until_purging(url, run)
        _pg_ctl(data, "-m", "immediate", "stop")
        out, err = run.communicate(timeout=120)
        # Back with the options it last ran with (postmaster.opts); a log file, so pg_ctl returns.
        _pg_ctl(data, "-l", os.path.join(os.path.dirname(data), "server.log"), "restart")

        assert run.returncode == 1, err
        [line] = err.strip().splitlines()[-1:]
        deleted = SESSIONS + 1 - sessions_left(url)
        assert 0 < deleted < SESSIONS + 1
        assert line.startswith(f"CommandError: Database error after deleting {deleted} session(s); the others were "
                               "not deleted and no new logout cutoff is in force: "), err
        assert "Successfully" not in out
        assert outcomes(url) == ["running"], "the lost run could not record its end"

        after = logout(url)

        assert after.returncode == 0, after.stderr
        assert "Marked run 1 (started on" in after.stderr and "ended without recording an outcome" in after.stderr
        assert outcomes(url) == ["failed", "success"]
        assert_every_old_session_ended(url, alice)
