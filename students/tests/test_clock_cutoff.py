"""The cutoff follows the schedule, not the moment a job runs: the clock cutoff with no job at all,
late scheduled runs that spare later logins, recordings that never log anyone out on the spot and
never forgive a passed cutoff, daylight-saving days, and the cost on the request path.

Django's clock is pinned (conftest.clock) to chosen moments of day D."""
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from students.clock import read_state
from students.models import LogoutRun
from students.schedule import DAY, target_instant
from students.tests.helpers import D, command, is_signed_in, login, stored, use_engine_param

pytestmark = pytest.mark.django_db

# --- a late scheduled run ------------------------------------------------------------------------

@pytest.fixture(params=["db", "cached_db", "file", "cache-on-redis"])
def any_engine(request, settings, tmp_path):
    return use_engine_param(request, settings, tmp_path)


def before_and_after_two_am(clock):
    """A 02:00 UTC schedule recorded the day before; alice logs in at 01:00, carol at 07:00; the
    clock is left at 08:00, six hours after the time a run now stands for."""
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    clock(D + timedelta(hours=1))
    early = login("alice")
    clock(D + timedelta(hours=7))
    late = login("carol")
    clock(D + timedelta(hours=8))
    return early, late


def test_a_late_run_spares_who_logged_in_after_the_time_it_stands_for(any_engine, users, clock):
    early, late = before_and_after_two_am(clock)   # the job fires six hours late
    status, out = command("logout_all_users", "--scheduled")
    assert status == 0, out
    assert "Successfully logged out all users by deleting 1 session(s)" in out
    assert "Spared 1 session(s) that began after " in out
    assert LogoutRun.objects.get().stands_for == D + timedelta(hours=2)
    assert not stored(early) and stored(late)
    assert not is_signed_in(early, "alice") and is_signed_in(late, "carol")


def test_a_late_dry_run_counts_what_it_would_spare_and_changes_nothing(users, clock):
    early, late = before_and_after_two_am(clock)
    status, out = command("logout_all_users", "--scheduled", "--dry-run")
    assert status == 0 and "Would spare 1 session(s) that began after " in out
    assert "Would log out all users by deleting 1 session(s)" in out
    assert stored(early) and stored(late) and not LogoutRun.objects.exists()


def test_a_manual_run_still_means_everyone_now(users, clock):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    clock(D + timedelta(hours=7))
    late = login("carol")
    clock(D + timedelta(hours=8))
    assert command("logout_all_users")[0] == 0
    assert not stored(late) and not is_signed_in(late, "carol")


def test_a_late_run_does_not_move_the_cutoff_back(users, clock):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    clock(D + timedelta(hours=5))
    command("logout_all_users")                       # by hand at 05:00: everyone, now
    clock(D + timedelta(hours=8))
    command("logout_all_users", "--scheduled")        # stands for 02:00
    assert read_state().run.at == (D + timedelta(hours=5)).timestamp()  # the run cutoff the middleware reads


# --- the clock cutoff, no job at all -------------------------------------------------------------

def test_the_clock_cutoff_ends_old_sessions_with_no_run_and_keeps_staff(users, clock):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--keep-staff")
    clock(D + timedelta(hours=1))
    alice, teacher = login("alice"), login("teacher")
    clock(D + timedelta(hours=1, minutes=59))
    assert is_signed_in(alice, "alice") and is_signed_in(teacher, "teacher")
    clock(D + timedelta(hours=2, seconds=1))
    assert not is_signed_in(alice, "alice") and not stored(alice)  # the old cookie: the login page
    assert is_signed_in(teacher, "teacher") and stored(teacher)
    assert not LogoutRun.objects.exists()
    again = login("alice")                      # a new login after 02:00 lives
    clock(D + timedelta(hours=23))
    assert is_signed_in(again, "alice")


def test_extra_times_and_excluded_users(users, clock):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--also", "14:00", "--timezone", "UTC", "--exclude-user", "carol")
    clock(D + timedelta(hours=3))
    alice, carol = login("alice"), login("carol")
    clock(D + timedelta(hours=13, minutes=59))
    assert is_signed_in(alice, "alice") and is_signed_in(carol, "carol")
    clock(D + timedelta(hours=14))
    assert not is_signed_in(alice, "alice")     # the extra time is a logout time too
    assert is_signed_in(carol, "carol")         # excluded by the schedule


def test_recording_logs_nobody_out_on_the_spot(users, clock):
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=3))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")  # 02:00 passed before R
    clock(D + timedelta(hours=3, minutes=1))
    assert is_signed_in(alice, "alice")
    clock(D + DAY + timedelta(hours=2))
    assert not is_signed_in(alice, "alice")


def test_changing_or_clearing_never_forgives_a_passed_cutoff(users, clock):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--keep-staff")
    clock(D + timedelta(hours=1))
    alice, teacher = login("alice"), login("teacher")  # then no request until after the change
    clock(D + timedelta(hours=3))
    command("logout_schedule", "--set", "04:00", "--timezone", "UTC")  # no longer keeps staff
    clock(D + timedelta(hours=3, minutes=1))
    assert not is_signed_in(alice, "alice")     # the 02:00 cutoff still holds
    assert is_signed_in(teacher, "teacher")     # kept by it; the new schedule logs nobody out now
    clock(D + timedelta(hours=3, minutes=30))
    carol = login("carol")                      # then no request until after the clear
    clock(D + timedelta(hours=4))
    assert not is_signed_in(teacher, "teacher")  # the new schedule's first time
    clock(D + timedelta(hours=5))
    command("logout_schedule", "--clear")
    clock(D + DAY + timedelta(hours=5))
    assert not is_signed_in(carol, "carol")     # the 04:00 cutoff outlived the schedule
    assert is_signed_in(login("carol"), "carol")  # and nothing new follows


def test_a_few_seconds_of_skew_do_not_log_anyone_out_twice(users, clock):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=2, seconds=1))
    assert not is_signed_in(alice, "alice")     # the clock cutoff
    alice = login("alice")                      # straight back in at 02:00:01
    clock(D + timedelta(hours=2, seconds=5))    # the job (or its host's clock) a few seconds later
    assert command("logout_all_users", "--scheduled")[0] == 0
    assert is_signed_in(alice, "alice") and stored(alice)


# --- daylight-saving days with the command -------------------------------------------------------

@pytest.mark.parametrize("first_day", ["2027-03-27", "2027-10-30"])
def test_hourly_firings_stand_for_each_dublin_day_once_across_a_change(users, clock, first_day):
    dublin = ZoneInfo("Europe/Dublin")
    start = datetime.fromisoformat(first_day).replace(tzinfo=UTC)
    clock(start - timedelta(hours=1))
    command("logout_schedule", "--set", "01:30", "--timezone", "Europe/Dublin")
    statuses = Counter()
    for hour in range(72):  # cron firing hourly on a UTC host, for three days
        clock(start + timedelta(hours=hour, minutes=5))
        statuses[command("logout_all_users", "--scheduled")[0]] += 1
    runs = list(LogoutRun.objects.order_by("started_at"))
    days = [start.date() + DAY * n for n in range(3)]
    assert [r.stands_for for r in runs] == [target_instant(day, time(1, 30), dublin) for day in days]
    assert statuses == {0: 3, 3: 69}


# --- what a page view costs ----------------------------------------------------------------------

def test_anonymous_requests_make_no_query_and_signed_in_ones_no_extra(users, clock, django_assert_num_queries):
    clock(D - DAY + timedelta(hours=12))
    command("logout_schedule", "--set", "02:00", "--also", "14:00", "--timezone", "Europe/Dublin", "--keep-staff")
    clock(D + timedelta(hours=1))
    carol = login("carol")
    visitor = Client()
    with django_assert_num_queries(0):
        assert visitor.get("/accounts/login/").status_code == 200
        assert visitor.get("/").status_code == 302
    carol.get("/")  # warms this process's cache of the cutoffs
    with django_assert_num_queries(2):  # the session row and the user row, as without a schedule
        assert carol.get("/").status_code == 200
