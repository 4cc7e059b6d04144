"""Per-user time zone mode: the scheduler fires hourly, most firings find nothing due, and a stopped
scheduler must show on the health URL within two hours, not a day. Every scheduled firing asks
`logout_all_users --scheduled --check-due` first (the wrapper does, before it pings /start); that
records the firing, and the health URL watches it."""
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError

from students import health
from students.models import LogoutSchedule
from students.tests.helpers import login
from students.tests.helpers import pin_clock, poll

pytestmark = pytest.mark.django_db

RECORDED = "2026-11-30T10:00:00+00:00"


def check_due(*options):
    """(exit status, output) of one firing's question."""
    out = StringIO()
    try:
        call_command("logout_all_users", *options, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue().strip()
    return 0, out.getvalue().strip()


def record(monkeypatch, *extra):
    pin_clock(monkeypatch, RECORDED)
    call_command("logout_schedule", "--set", "02:00", "--timezone", "Europe/Dublin", *extra, stdout=StringIO())


def test_check_due_says_due_or_not_and_deletes_nothing(monkeypatch, users):
    record(monkeypatch, "--per-user-zones")
    login("alice"), login("carol")
    pin_clock(monkeypatch, "2026-11-30T23:00:00+00:00")
    status, out = check_due("--scheduled", "--check-due")
    assert status == 3 and out.startswith("Not due: every zone's latest logout time has a run; the next is ")

    pin_clock(monkeypatch, "2026-12-01T02:00:30+00:00")
    status, out = check_due("--scheduled", "--check-due")
    assert (status, out) == (0, "Due: a scheduled run now stands for 2026-12-01T02:00:00+00:00")
    status, out = check_due("--scheduled", "--check-due", "--json")
    assert status == 0 and '"due": true' in out
    # It only asked: the run is still due, nobody was logged out.
    assert Session.objects.count() == 2
    assert check_due("--scheduled", "--check-due")[0] == 0


def test_check_due_needs_scheduled_and_a_schedule(monkeypatch):
    with pytest.raises(CommandError, match="--check-due goes with --scheduled") as raised:
        call_command("logout_all_users", "--check-due", stdout=StringIO())
    assert raised.value.returncode == 2
    with pytest.raises(CommandError, match="no logout schedule is recorded"):
        call_command("logout_all_users", "--scheduled", "--check-due", stdout=StringIO())


def test_a_stopped_hourly_scheduler_is_overdue_two_hours_after_its_last_firing(monkeypatch):
    record(monkeypatch, "--per-user-zones")
    fired = pin_clock(monkeypatch, "2026-11-30T23:00:00+00:00")
    assert check_due("--scheduled", "--check-due")[0] == 3  # nothing due: still a firing
    assert LogoutSchedule.objects.get().last_fired_at == fired

    pin_clock(monkeypatch, fired + timedelta(hours=2) - timedelta(seconds=1))
    status, body = poll()
    assert (status, body["status"]) == (200, "ok")

    pin_clock(monkeypatch, fired + timedelta(hours=2))
    status, body = poll()
    assert (status, body["status"], body["overdue_since"]) == (503, "overdue", "2026-12-01T01:00:00Z")
    assert "the hourly firing of per-user time zone mode is missing (the last at 2026-11-30 23:00 UTC)" \
        in health.logout_health().summary

    # The next firing clears it.
    pin_clock(monkeypatch, fired + timedelta(hours=2, minutes=5))
    check_due("--scheduled", "--check-due")
    assert poll()[0] == 200


def test_firings_that_keep_coming_keep_it_ok_through_the_day(monkeypatch):
    record(monkeypatch, "--per-user-zones")
    at = pin_clock(monkeypatch, "2026-11-30T10:30:00+00:00")
    for hour in range(20):  # hourly firings, most not due
        pin_clock(monkeypatch, at + timedelta(hours=hour))
        check_due("--scheduled", "--check-due")
        assert poll()[0] == 200, hour


def test_a_daily_schedule_does_not_watch_firings(monkeypatch):
    record(monkeypatch)
    pin_clock(monkeypatch, "2026-11-30T23:00:00+00:00")
    assert check_due("--scheduled", "--check-due")[0] == 3
    pin_clock(monkeypatch, "2026-12-01T03:00:00+00:00")  # no firing for 4 hours: a daily one is not due yet
    status, body = poll()
    assert (status, body["status"]) == (200, "ok")
