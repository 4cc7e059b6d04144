"""No scheduler at all (`logout_schedule --scheduler none`): the site deletes expired and cut-off
sessions itself, once per interval for the whole site, in bounded turns, after a response."""
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.cache import cache

from students import cleanup
from students.schedule import DAY
from students.tests.helpers import D, command, is_signed_in, login, stored, use_engine

pytestmark = pytest.mark.django_db


@pytest.fixture
def turn_may_be_due(monkeypatch):
    """As if this process had not looked for CHECK_SECONDS."""
    monkeypatch.setattr(cleanup, "_next_check", 0.0)


def expired_sessions(n):
    for _ in range(n):
        store = SessionStore()
        store.set_expiry(-60)
        store.create()


@pytest.mark.parametrize("engine_name", ["db", "cached_db"])
def test_a_signed_in_request_triggers_one_bounded_turn_per_interval(engine_name, settings, tmp_path, users,
                                                                     clock, monkeypatch):
    use_engine(settings, tmp_path, engine_name)
    monkeypatch.setattr(cleanup, "_next_check", float("inf"))  # no turn while setting up
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--scheduler", "none", "--keep-staff")
    clock(D + timedelta(hours=1))
    alice, teacher = login("alice"), login("teacher")   # began before 02:00
    clock(D + timedelta(hours=3))
    carol = login("carol")                              # began after it
    clock(D + timedelta(hours=4))
    expired_sessions(3)
    monkeypatch.setattr(cleanup, "CLEANUP_BATCH", 3)
    monkeypatch.setattr(cleanup, "_next_check", 0.0)
    assert cleanup.last_cleanup() is None
    assert is_signed_in(carol, "carol")                 # the request; the turn runs after its response
    assert cleanup.last_cleanup() == D + timedelta(hours=4)
    assert Session.objects.count() == 3                 # the bound: only the 3 expired went
    assert stored(alice)
    cache.delete(cleanup.CLAIM_KEY)                     # as when CLEANUP_INTERVAL has passed
    monkeypatch.setattr(cleanup, "_next_check", 0.0)
    assert is_signed_in(carol, "carol")
    assert not stored(alice)                            # cut off at 02:00, never came back: deleted
    assert stored(teacher) and stored(carol)            # kept by the schedule; began after
    assert is_signed_in(teacher, "teacher")
    expired_sessions(1)
    monkeypatch.setattr(cleanup, "_next_check", 0.0)
    assert is_signed_in(carol, "carol")                 # within the interval: the turn is taken
    assert Session.objects.count() == 3


def test_only_one_turn_per_interval_for_the_site(users, clock):
    clock(D)
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--scheduler", "none")
    expired_sessions(2)
    assert cleanup.take_turn().deleted_expired == 2
    expired_sessions(1)
    assert cleanup.take_turn() is None and Session.objects.count() == 1


def test_with_a_scheduler_the_site_does_not_clean_up(users, clock, turn_may_be_due):
    clock(D)
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--scheduler", "cron")
    alice = login("alice")
    expired_sessions(2)
    assert is_signed_in(alice, "alice")
    assert cleanup.last_cleanup() is None and Session.objects.count() == 3


def test_cleanup_checks_cost_anonymous_requests_nothing(users, clock, turn_may_be_due, django_assert_num_queries):
    from django.test import Client
    clock(D)
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--scheduler", "none")
    expired_sessions(2)
    with django_assert_num_queries(0):
        Client().get("/accounts/login/")
    assert Session.objects.count() == 2 and cleanup.last_cleanup() is None
