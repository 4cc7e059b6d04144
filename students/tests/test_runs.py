"""Run records, application logs, --json, the lock, and errors that must change nothing."""
import json
import logging
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.core.management import CommandError
from django.utils import timezone

from students import lock as lock_module
from students.lock import LOCK_NAME, run_lock
from students.models import LogoutRun, RunLease
from students.tests.helpers import run_command as run, is_signed_in, login

pytestmark = pytest.mark.django_db


def test_a_real_run_is_recorded_and_logged(users, caplog):
    login("alice"), login("carol"), login("teacher")
    with caplog.at_level(logging.INFO, logger="students.logout"):
        run("--exclude-user", "carol", "--keep-staff")
    record = LogoutRun.objects.get()
    assert record.outcome == "success" and record.error == ""
    assert (record.deleted_active, record.deleted_expired, record.kept_sessions) == (1, 0, 2)
    assert record.kept_usernames == ["carol"] and record.keep_staff
    assert record.started_at <= record.finished_at
    assert record.host and record.engine == "django.contrib.sessions.backends.db"
    assert "Daily logout: deleted 1 active and 0 expired session(s)" in caplog.text


def test_dry_run_records_nothing(users):
    login("alice")
    run("--dry-run")
    assert not LogoutRun.objects.exists()


def test_json_summary(users):
    login("alice")
    summary = json.loads(run("--json"))
    assert summary["outcome"] == "success" and summary["dry_run"] is False
    assert summary["deleted_active"] == 1 and summary["deleted_expired"] == 0
    assert summary["engine"] == "db" and summary["run_id"] == LogoutRun.objects.get().pk


def test_json_dry_run_has_the_split(users):
    login("alice"), login("carol")
    summary = json.loads(run("--dry-run", "--json", "--exclude-user", "carol"))
    assert (summary["live_authenticated"], summary["live_anonymous"], summary["kept_sessions"]) == (2, 0, 1)


def test_verbosity_2_adds_detail_and_0_keeps_the_contract_lines(users):
    assert "Session engine: db" in run("-v", "2")
    assert "Session engine" not in run("-v", "0")


def test_unknown_user_is_an_error_naming_it_and_changes_nothing(users):
    alice = login("alice")
    with pytest.raises(CommandError, match="unknown username.*: bobby, zed"):
        run("--exclude-user", "alice", "--exclude-user", "zed", "--exclude-user", "bobby")
    assert is_signed_in(alice, "alice")
    assert not LogoutRun.objects.exists()


def test_unsupported_engine_is_an_error(users, settings):
    settings.SESSION_ENGINE = "students.models"  # importable, but no SessionStore
    with pytest.raises(CommandError, match="session engine 'students.models' cannot be imported"):
        run()


@contextmanager
def lock_held_elsewhere():
    """Another run holding the lock (the lease row; this process is alive, so it is not taken over)."""
    with run_lock():
        yield


def test_lock_held_exits_75_and_changes_nothing(users):
    alice = login("alice")
    with lock_held_elsewhere():
        with pytest.raises(CommandError, match=r"^Another logout run holds the lock \(") as error:
            run()
    assert error.value.returncode == 75
    assert is_signed_in(alice, "alice")
    run()  # released: the next run goes through
    assert not Session.objects.exists()
    assert not is_signed_in(alice, "alice")


def test_a_crashed_runs_lease_expires(users):
    now = timezone.now()
    RunLease.objects.create(name=LOCK_NAME, holder="dead-host:1", acquired_at=now - timedelta(hours=2),
                            expires_at=now - timedelta(hours=1))
    stale = LogoutRun.objects.create(started_at=now - timedelta(hours=2), host="dead-host", engine="db")
    login("alice")
    assert "deleting 1 session(s)" in run()
    stale.refresh_from_db()
    assert stale.outcome == "failed" and "abandoned" in stale.error
    assert not RunLease.objects.exists(), "the lease is released after the run"


def test_a_live_lease_names_its_holder(users):
    now = timezone.now()
    RunLease.objects.create(name=LOCK_NAME, holder="web2:4242", acquired_at=now, expires_at=now + timedelta(minutes=5))
    with pytest.raises(CommandError, match="held by web2:4242"):
        run()


def test_a_failing_purge_is_recorded_as_failed(users, monkeypatch):
    login("alice")

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr("students.logout.purge", broken)
    with pytest.raises(CommandError, match="disk on fire"):
        run()
    record = LogoutRun.objects.get()
    assert record.outcome == "failed" and record.error == "disk on fire"
    assert Session.objects.count() == 1


def test_lease_is_renewed_while_working(users, monkeypatch):
    monkeypatch.setattr(lock_module, "LEASE_SECONDS", 1)
    with run_lock(lease_seconds=1) as held:
        first = RunLease.objects.get().expires_at
        held.refresh()
        assert RunLease.objects.get().expires_at > first


def test_a_run_whose_lease_was_taken_over_fails_loudly(users):
    from students.lock import LockLost

    with run_lock() as held:
        RunLease.objects.update(holder="web9:1")  # as if our lease expired and web9 took it over
        with pytest.raises(LockLost, match="taken over"):
            held.refresh()
