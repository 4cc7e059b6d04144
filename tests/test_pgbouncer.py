"""The cluster lock behind PgBouncer (Debian's pgbouncer between the command and a throw-away
PostgreSQL), in transaction and in session pooling: two runs at once give one purge, a finished
run leaves no lock behind, and a run killed with kill -9 mid-purge does not block the next one
beyond its lease. A session-level advisory lock fails here in transaction pooling: the lock stays
on a pooled server connection and another client's statements can land on that connection.

The runs are real `manage.py logout_all_users` processes; tests.support.fault_settings only adds a pause
after every purge batch so that a second run, or kill -9, lands while the first is purging."""
import signal
import time

import pytest

from tests.support.faulty_run import SESSIONS, logout, outcomes, sessions_left, site_database, sql, wait_until_purging
from tests.support.pgbouncer_server import pgbouncer


@pytest.fixture(params=["transaction", "session"])
def bounced(request, postgres_server):
    """(direct URL, URL through PgBouncer) of a fresh site database, in each pool mode."""
    with site_database(postgres_server) as direct, pgbouncer(direct, pool_mode=request.param) as through:
        yield direct, through


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
