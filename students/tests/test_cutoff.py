"""The logout cutoff: recorded per run, enforced by the middleware at the next request."""
import time
from io import StringIO

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from students import cutoff
from students.models import LogoutRun
from students.selection import FUTURE_LOGIN_TOLERANCE_SECONDS, LOGIN_TIME_KEY
from students.tests.helpers import is_signed_in, login

pytestmark = pytest.mark.django_db


def record_run_elsewhere(expire_cached_view=True, **fields):
    """What another process (the nightly job) leaves behind: a successful run in the database.
    By default this process's cached view of the cutoff is dropped, as after CACHE_SECONDS."""
    run = LogoutRun.objects.create(started_at=timezone.now(), host="other-host", engine="db",
                                   outcome=LogoutRun.Outcome.SUCCESS, **fields)
    if expire_cached_view:
        cache.delete(cutoff.CACHE_KEY)
    return run


def test_login_time_is_stamped_into_the_session(users):
    before = time.time()
    client = login("alice")
    assert before <= client.session[LOGIN_TIME_KEY] <= time.time()


def test_session_that_began_before_the_cutoff_is_ended(users):
    alice = login("alice")
    record_run_elsewhere()
    assert not is_signed_in(alice, "alice")


def test_session_that_began_after_the_cutoff_lives(users):
    record_run_elsewhere()
    alice = login("alice")
    assert is_signed_in(alice, "alice")


def test_kept_users_and_staff_are_exempt(users):
    alice, teacher, carol = login("alice"), login("teacher"), login("carol")
    record_run_elsewhere(kept_user_ids=[str(users["alice"].pk)], keep_staff=True)
    assert is_signed_in(alice, "alice") and is_signed_in(teacher, "teacher")
    assert not is_signed_in(carol, "carol")


def test_a_session_without_login_time_counts_as_older_than_any_cutoff(users):
    user = users["alice"]
    store = SessionStore()  # as made before this app stamped login times
    store.update({SESSION_KEY: str(user.pk), HASH_SESSION_KEY: user.get_session_auth_hash(),
                  BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend"})
    store.create()
    client = Client()
    client.cookies["sessionid"] = store.session_key
    assert is_signed_in(client, "alice")
    record_run_elsewhere()
    assert not is_signed_in(client, "alice")


def test_failed_and_running_runs_set_no_cutoff(users):
    alice = login("alice")
    LogoutRun.objects.create(started_at=timezone.now(), host="h", engine="db", outcome=LogoutRun.Outcome.FAILED)
    LogoutRun.objects.create(started_at=timezone.now(), host="h", engine="db", outcome=LogoutRun.Outcome.RUNNING)
    cache.delete(cutoff.CACHE_KEY)
    assert is_signed_in(alice, "alice")


def test_a_new_cutoff_from_another_process_is_seen_within_the_cache_lifetime(users, monkeypatch):
    monkeypatch.setattr(cutoff, "CACHE_SECONDS", 1)
    alice = login("alice")
    assert is_signed_in(alice, "alice")  # caches "no cutoff yet" for CACHE_SECONDS
    record_run_elsewhere(expire_cached_view=False)
    assert is_signed_in(alice, "alice")  # still the cached view
    time.sleep(1.2)
    assert not is_signed_in(alice, "alice")


def test_the_command_publishes_its_cutoff_at_once(users, monkeypatch):
    monkeypatch.setattr(cutoff, "CACHE_SECONDS", 300)
    alice = login("alice")
    assert is_signed_in(alice, "alice")  # the cache now says "no cutoff" for 300 s
    call_command("logout_all_users", stdout=StringIO())
    assert not is_signed_in(alice, "alice")


def test_per_request_cost_is_one_cache_read(users, django_assert_num_queries):
    alice = login("alice")
    record_run_elsewhere()
    login("carol").get("/")  # warms the cache with the new cutoff
    carol = login("carol")
    # A signed-in page view on the db engine: session row + user row, and nothing for the cutoff.
    with django_assert_num_queries(2):
        assert carol.get("/").status_code == 200
    assert not is_signed_in(alice, "alice")


def stamp_login_time(client, when):
    """What a web host whose clock shows `when` at the login writes into the session."""
    session = client.session
    session[LOGIN_TIME_KEY] = when
    session.save()


def test_a_login_stamped_by_a_fast_clock_counts_as_older_than_any_cutoff(users):
    alice, carol = login("alice"), login("carol")
    now = time.time()
    stamp_login_time(alice, now + 3600)  # a web host an hour fast
    stamp_login_time(carol, now + FUTURE_LOGIN_TOLERANCE_SECONDS - 60)  # a little fast: within the tolerance
    assert is_signed_in(alice, "alice") and is_signed_in(carol, "carol")  # no cutoff yet
    record_run_elsewhere()
    assert not is_signed_in(alice, "alice")
    assert is_signed_in(carol, "carol")  # her login counts as after the run, as it would have been
