"""The cluster lock's lease (students.lock), on SQLite and in the PostgreSQL re-run: who may take
a lease over and when, and a bad lease length. Real processes and PgBouncer: tests/test_pgbouncer.py."""
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError
from django.utils import timezone

from students.lock import LOCK_NAME, LockHeld, holder_name, run_lock
from students.models import RunLease
from students.tests.helpers import login, run_command, stored

pytestmark = pytest.mark.django_db


def lease_of(holder, expires_in):
    now = timezone.now()
    return RunLease.objects.create(name=LOCK_NAME, holder=holder, acquired_at=now - timedelta(seconds=5),
                                   expires_at=now + expires_in)


def dead_pid():
    """The id of a process of this host that has just ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_live_lease_of_a_dead_process_on_this_host_is_taken_over_at_once():
    host = holder_name().rpartition(":")[0]
    lease_of(f"{host}:{dead_pid()}", timedelta(minutes=10))
    with run_lock():
        assert RunLease.objects.get().holder == holder_name()
    assert not RunLease.objects.exists()


def test_a_live_lease_of_a_live_process_on_this_host_is_not_taken_over():
    host = holder_name().rpartition(":")[0]
    lease_of(f"{host}:1", timedelta(minutes=10))  # pid 1 is always alive
    with pytest.raises(LockHeld, match=f"held by {host}:1"):
        with run_lock():
            pass


def test_a_live_lease_of_another_host_waits_for_its_expiry():
    lease = lease_of("web7.example:99999999", timedelta(minutes=10))
    with pytest.raises(LockHeld, match="web7.example:99999999"):
        with run_lock():
            pass
    RunLease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with run_lock():
        assert RunLease.objects.get().holder == holder_name()


def test_the_lease_lasts_the_configured_seconds(settings):
    settings.LOGOUT_LOCK_LEASE_SECONDS = "7"
    with run_lock():
        lease = RunLease.objects.get()
        assert timedelta(seconds=6) < lease.expires_at - lease.acquired_at <= timedelta(seconds=7)


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_a_bad_lease_length_is_an_error_naming_the_setting_and_value(settings, value):
    settings.LOGOUT_LOCK_LEASE_SECONDS = value
    with pytest.raises(ImproperlyConfigured, match=f"LOGOUT_LOCK_LEASE_SECONDS .* not '{value}'"):
        with run_lock():
            pass
    assert not RunLease.objects.exists()


def test_the_command_refuses_a_bad_lease_length_naming_it(settings, users):
    alice = login("alice")
    settings.LOGOUT_LOCK_LEASE_SECONDS = "soon"
    with pytest.raises(CommandError, match="LOGOUT_LOCK_LEASE_SECONDS must be a positive whole number of seconds, not 'soon'"):
        run_command()
    assert stored(alice)
