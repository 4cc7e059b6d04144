"""The health URL /health/nightly-logout/ as an uptime monitor polls it: no login, no session,
200 while the nightly logout is healthy, 503 once overdue, a JSON body of fixed keys."""
import json
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client

from students import cleanup, health
from students.models import LogoutRun
from students.tests.helpers import HEALTH_URL as URL, login, pin_clock, poll, record_schedule

pytestmark = pytest.mark.django_db



def test_no_schedule_is_200_unscheduled():
    status, body = poll()
    assert status == 200
    assert body == {"status": "unscheduled", "scheduler": None, "last_success": None, "next_due": None,
                    "overdue_since": None}


def test_no_success_turns_503_after_the_period_and_grace(monkeypatch):
    schedule = record_schedule(monkeypatch, "02:00", "Europe/Dublin")
    assert schedule.period() == timedelta(hours=24) and health.GRACE == timedelta(hours=2)
    due = schedule.recorded_at + timedelta(hours=26)  # 2026-12-01 12:00 UTC

    pin_clock(monkeypatch, due - timedelta(seconds=1))
    status, body = poll()
    assert status == 200
    assert body == {"status": "ok", "scheduler": "cron", "last_success": None,
                    "next_due": "2026-12-02T02:00:00Z", "overdue_since": None}

    pin_clock(monkeypatch, due)
    status, body = poll()
    assert status == 503
    assert body == {"status": "overdue", "scheduler": "cron", "last_success": None,
                    "next_due": "2026-12-02T02:00:00Z", "overdue_since": "2026-12-01T12:00:00Z"}


def test_a_successful_run_restarts_the_clock_and_a_failed_one_does_not(monkeypatch, users):
    record_schedule(monkeypatch, "02:00", "Europe/Dublin", scheduler="systemd")
    ran = pin_clock(monkeypatch, "2026-12-01T02:00:05+00:00")
    call_command("logout_all_users", stdout=StringIO())  # a real run, as the timer starts it
    assert LogoutRun.objects.get().outcome == "success"
    LogoutRun.objects.create(started_at=ran + timedelta(hours=24), finished_at=ran + timedelta(hours=24),
                             host="web1", engine="django.contrib.sessions.backends.db", outcome="failed")

    pin_clock(monkeypatch, ran + timedelta(hours=26) - timedelta(seconds=1))
    status, body = poll()
    assert (status, body["status"], body["last_success"]) == (200, "ok", "2026-12-01T02:00:05Z")

    pin_clock(monkeypatch, ran + timedelta(hours=26))
    status, body = poll()
    assert status == 503 and body["overdue_since"] == "2026-12-02T04:00:05Z"
    assert body["scheduler"] == "systemd" and body["last_success"] == "2026-12-01T02:00:05Z"


def test_keys_are_exactly_the_fixed_list_and_carry_no_names_or_hosts(monkeypatch, users):
    record_schedule(monkeypatch, "02:00", "Europe/Dublin")
    call_command("logout_all_users", "--exclude-user", "alice", stdout=StringIO())
    run = LogoutRun.objects.get()
    response = Client().get(URL)
    assert tuple(json.loads(response.content)) == health.KEYS
    assert run.host not in response.content.decode() and "alice" not in response.content.decode()


def test_no_login_no_session_and_a_cached_answer_costs_no_query(monkeypatch, django_assert_num_queries):
    record_schedule(monkeypatch, "02:00", "Europe/Dublin")
    cache.delete(health.CACHE_KEY)
    sessions = Session.objects.count()
    client = Client()
    with django_assert_num_queries(1):  # the newest success; the schedule comes from the cache
        first = client.get(URL)
    with django_assert_num_queries(0):
        second = client.get(URL)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert not first.cookies and not second.cookies  # no session cookie, no CSRF cookie
    assert Session.objects.count() == sessions
    assert "no-cache" in first["Cache-Control"]  # proxies must not keep it beyond our few seconds


def test_a_signed_in_user_gets_the_same_answer(monkeypatch, users):
    record_schedule(monkeypatch, "02:00", "Europe/Dublin")
    alice = login("alice")
    response = alice.get(URL)
    assert response.status_code == 200 and json.loads(response.content)["status"] == "ok"


def test_only_get_and_head():
    assert Client().post(URL).status_code == 405
    assert Client().head(URL).status_code == 200


def test_an_unreadable_database_is_503_unknown(monkeypatch):
    record_schedule(monkeypatch, "02:00", "Europe/Dublin")
    table = LogoutRun._meta.db_table
    with connection.cursor() as cursor:  # as if `migrate` had not made the table yet
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    status, body = poll()
    assert status == 503 and body == {**dict.fromkeys(health.KEYS), "status": "unknown"}


# --- scheduler none: the site's own cleanup ------------------------------------------------------

def test_scheduler_none_a_quiet_site_stays_healthy(monkeypatch):
    """Nobody signs in, nothing grows: no cleanup is needed, however long ago the last one was."""
    schedule = record_schedule(monkeypatch, "02:00", "Europe/Dublin", scheduler="none")
    pin_clock(monkeypatch, schedule.recorded_at + timedelta(days=3))
    status, body = poll()
    assert status == 200
    assert body == {"status": "ok", "scheduler": "none", "last_success": None,
                    "next_due": "2026-11-30T10:10:00Z", "overdue_since": None}


def test_scheduler_none_a_sign_in_with_no_cleanup_after_it_turns_503(monkeypatch, users):
    schedule = record_schedule(monkeypatch, "02:00", "Europe/Dublin", scheduler="none")
    assert cleanup.CLEANUP_INTERVAL == timedelta(minutes=10)
    signed_in_at = pin_clock(monkeypatch, schedule.recorded_at + timedelta(minutes=20))
    Client().force_login(users["alice"])  # a session and a last_login, and no request that cleans up

    pin_clock(monkeypatch, signed_in_at + health.GRACE - timedelta(seconds=1))
    assert poll() == (200, {"status": "ok", "scheduler": "none", "last_success": None,
                            "next_due": "2026-11-30T10:10:00Z", "overdue_since": None})
    pin_clock(monkeypatch, signed_in_at + health.GRACE)
    assert poll() == (503, {"status": "overdue", "scheduler": "none", "last_success": None,
                            "next_due": "2026-11-30T10:10:00Z", "overdue_since": "2026-11-30T12:20:00Z"})

    cleaned_at = pin_clock(monkeypatch, signed_in_at + timedelta(hours=3))
    assert cleanup.take_turn() is not None  # the site's own turn, as a signed-in request starts it
    status, body = poll()
    assert (status, body["status"], body["last_success"]) == (200, "ok", "2026-11-30T13:20:00Z")
    assert cleaned_at == datetime.fromisoformat(body["last_success"])


def test_scheduler_none_a_sign_in_a_process_may_not_have_looked_at_yet_is_no_witness(monkeypatch, users):
    """A web process looks at most once per CHECK_SECONDS: a sign-in within that of the interval's end
    may pass without a turn, and the next one will do it."""
    schedule = record_schedule(monkeypatch, "02:00", "Europe/Dublin", scheduler="none")
    window_end = schedule.recorded_at + cleanup.CLEANUP_INTERVAL + timedelta(seconds=cleanup.CHECK_SECONDS)
    pin_clock(monkeypatch, window_end - timedelta(seconds=1))
    Client().force_login(users["alice"])
    later = pin_clock(monkeypatch, window_end + timedelta(hours=5))
    assert poll()[0] == 200
    Client().force_login(users["carol"])  # well after the window: a witness
    pin_clock(monkeypatch, later + health.GRACE)
    assert poll() == (503, {"status": "overdue", "scheduler": "none", "last_success": None,
                            "next_due": "2026-11-30T10:10:00Z", "overdue_since": "2026-11-30T17:11:00Z"})


def test_scheduler_none_ignores_logout_runs(monkeypatch, users):
    """A nightly job is not what keeps a scheduler-none site clean: only its own cleanup counts."""
    schedule = record_schedule(monkeypatch, "02:00", "Europe/Dublin", scheduler="none")
    pin_clock(monkeypatch, schedule.recorded_at + timedelta(minutes=20))
    Client().force_login(users["alice"])
    pin_clock(monkeypatch, schedule.recorded_at + timedelta(hours=3))
    call_command("logout_all_users", stdout=StringIO())
    status, body = poll()
    assert status == 503 and body["last_success"] is None
