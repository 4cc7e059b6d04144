"""Each user's own time zone (per-user mode): each session is logged out at the schedule's local time
in its user's zone, a zone switch cannot put a logout off, the hourly runs delete only the sessions
of the zones whose time passed, and none of it costs a query per request.

Day D is in December: Europe/Dublin is UTC+0 and Asia/Tokyo UTC+9, so Tokyo's 02:00 of day D is
17:00 UTC the day before, and Dublin's is 02:00 UTC. Django's clock is pinned (conftest.clock)."""
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management.base import CommandError
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.test import Client

from students.schedule import DAY
from students.models import LogoutRun, UserTimeZone
from students.selection import ZONE_KEY
from students.tests.helpers import D, PASSWORD, command, is_signed_in, login, stored, use_engine_param

pytestmark = pytest.mark.django_db

TOKYO_2AM = D - DAY + timedelta(hours=17)
DUBLIN_2AM = D + timedelta(hours=2)


def per_user_schedule(clock, *extra):
    """02:00 in each user's zone, Europe/Dublin for users without one, recorded the day before."""
    clock(D - DAY + timedelta(hours=12))
    status, out = command("logout_schedule", "--set", "02:00", "--timezone", "Europe/Dublin", "--per-user-zones",
                          *extra)
    assert status == 0 and "in each user's own time zone (Europe/Dublin for users without one)" in out, out


def give_zone(user, name):
    UserTimeZone.objects.update_or_create(user=user, defaults={"zone": name})


@pytest.fixture(params=["db", "cached_db", "file", "signed_cookies", "cache-on-redis"])
def any_engine(request, settings, tmp_path):
    return use_engine_param(request, settings, tmp_path)


# --- the clock cutoff, per zone ------------------------------------------------------------------

def test_tokyo_is_logged_out_at_tokyos_two_am_and_dublin_at_dublins(any_engine, users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")                 # carol has none: Dublin, the schedule's
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, carol = login("alice"), login("carol")
    clock(TOKYO_2AM - timedelta(seconds=1))
    assert is_signed_in(alice, "alice") and is_signed_in(carol, "carol")
    clock(TOKYO_2AM + timedelta(seconds=1))
    assert not is_signed_in(alice, "alice")
    assert is_signed_in(carol, "carol")
    clock(DUBLIN_2AM - timedelta(seconds=1))
    assert is_signed_in(carol, "carol")
    clock(DUBLIN_2AM + timedelta(seconds=1))
    assert not is_signed_in(carol, "carol")


def test_the_zone_is_read_from_the_session_not_the_database(users, clock, django_assert_num_queries):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice = login("alice")
    assert alice.session[ZONE_KEY] == "Asia/Tokyo"
    visitor = Client()
    with django_assert_num_queries(0):
        assert visitor.get("/").status_code == 302
    alice.get("/")  # warms this process's cache of the schedule
    with django_assert_num_queries(2):  # the session row and the user row, as without a schedule
        assert alice.get("/").status_code == 200


def test_the_warning_banner_counts_down_to_the_users_own_two_am(users, clock):
    per_user_schedule(clock, "--warn-minutes", "30")
    give_zone(users["alice"], "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, carol = login("alice"), login("carol")
    clock(TOKYO_2AM - timedelta(minutes=20))
    page = alice.get("/").content.decode()
    assert "You will be signed out at <time>02:00</time>" in page and "in 20 minutes</span>" in page
    assert "You will be signed out" not in carol.get("/").content.decode()   # Dublin's 02:00: 9 hours away


def test_pages_show_times_in_the_users_own_zone(users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))                 # 16:00 UTC, 01:00 in Tokyo
    alice, carol = login("alice"), login("carol")
    assert "Last login: " + date_format(localtime(TOKYO_2AM - timedelta(hours=1), ZoneInfo("Asia/Tokyo")),
                                        "DATETIME_FORMAT") in alice.get("/").content.decode()
    assert "Last login: " + date_format(localtime(TOKYO_2AM - timedelta(hours=1), ZoneInfo("Europe/Dublin")),
                                        "DATETIME_FORMAT") in carol.get("/").content.decode()


# --- a switch of zone ----------------------------------------------------------------------------

def test_switching_zone_just_before_the_logout_does_not_put_it_off(users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Europe/Dublin")
    clock(DUBLIN_2AM - timedelta(hours=1))
    alice = login("alice")
    clock(DUBLIN_2AM - timedelta(minutes=10))
    # Tokyo's 02:00 has just passed, so Tokyo would not log her out for another 15 hours.
    response = alice.post("/accounts/time-zone/", {"zone": "Asia/Tokyo"}, follow=True)
    page = response.content.decode()
    assert "It changes to <strong>Asia/Tokyo</strong> after your next logout" in page, page
    assert f"{DUBLIN_2AM:%Y-%m-%d %H:%M}" in page
    again = login("alice")                        # a second login before 02:00 still follows Dublin
    assert again.session[ZONE_KEY] == "Europe/Dublin"
    clock(DUBLIN_2AM + timedelta(seconds=1))
    assert not is_signed_in(alice, "alice") and not is_signed_in(again, "alice")
    after = login("alice")                        # from the next logout on: Tokyo
    assert after.session[ZONE_KEY] == "Asia/Tokyo"
    clock(DUBLIN_2AM + timedelta(hours=14))       # 16:00 UTC: 01:00 in Tokyo
    assert is_signed_in(after, "alice")
    clock(TOKYO_2AM + DAY + timedelta(seconds=1))
    assert not is_signed_in(after, "alice")


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Asia/Tokyo", "Asia/Kolkata", "America/Los_Angeles",
                                  "Pacific/Pago_Pago"])
def test_no_session_outlives_24_hours_whatever_the_switches(users, clock, zone):
    """Log in at each hour of the day, switch to another zone at once and at every hour after: the
    session still ends within 24 hours of its login."""
    per_user_schedule(clock)
    for hour in range(24):
        login_at = D + timedelta(hours=hour, minutes=30)
        give_zone(users["alice"], "Europe/Dublin")
        clock(login_at)
        alice = login("alice")
        ended = None
        for step in range(1, 26):
            clock(login_at + timedelta(hours=step) - timedelta(minutes=29))
            if not is_signed_in(alice, "alice"):
                ended = step
                break
            alice.post("/accounts/time-zone/", {"zone": zone if step % 2 else "Europe/Dublin"})
        assert ended is not None and ended <= 24, f"login at {login_at}: still signed in after 24 hours"


def test_a_zone_not_on_the_iana_list_is_refused_and_changes_nothing(users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice = login("alice")
    for bad in ("Mars/Olympus_Mons", "../etc/passwd", "Europe"):
        response = alice.post("/accounts/time-zone/", {"zone": bad})
        assert response.status_code == 200
        assert f"Select a valid choice. {bad} is not one of the available choices." in response.content.decode()
    row = UserTimeZone.objects.get(user=users["alice"])
    assert (row.zone, row.next_zone, row.next_zone_from) == ("Asia/Tokyo", "", None)


def test_the_zone_is_first_filled_from_the_browser(users, clock):
    per_user_schedule(clock)
    clock(D + timedelta(hours=1))
    browser = Client()
    assert browser.post("/accounts/login/", {"username": "carol", "password": PASSWORD,
                                             "browser_zone": "Asia/Tokyo"}).status_code == 302
    row = UserTimeZone.objects.get(user=users["carol"])
    # A first zone too waits for the next logout in the zone in effect (the schedule's).
    assert (row.zone, row.next_zone, row.next_zone_from) == ("", "Asia/Tokyo", DUBLIN_2AM)
    assert browser.session[ZONE_KEY] == "Europe/Dublin"
    # Later logins never overwrite a zone the user has; a name off the IANA list is ignored.
    for sent, user in (("Europe/Paris", "carol"), ("Not/A_Zone", "alice")):
        Client().post("/accounts/login/", {"username": user, "password": PASSWORD, "browser_zone": sent})
    assert UserTimeZone.objects.get(user=users["carol"]).next_zone == "Asia/Tokyo"
    assert not UserTimeZone.objects.filter(user=users["alice"]).exists()


def test_the_login_page_sends_the_browser_zone():
    page = Client().get("/accounts/login/").content.decode()
    assert 'name="browser_zone"' in page and "students/browser_zone.js" in page


# --- the hourly runs -----------------------------------------------------------------------------

def test_each_hourly_run_deletes_only_the_zones_whose_time_passed(any_engine, users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")
    give_zone(users["teacher"], "Europe/Dublin")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, carol, teacher = login("alice"), login("carol"), login("teacher")
    visitor = Client()
    anonymous = visitor.session
    anonymous["seen_the_site"] = True
    anonymous.save()                                    # an anonymous session: the schedule's zone's
    clock(TOKYO_2AM + timedelta(minutes=45))            # the hourly firing after Tokyo's 02:00
    alice_late = login("alice")                          # began after the instant: spared
    status, out = command("logout_all_users", "--scheduled")
    assert status == 0, out
    run = LogoutRun.objects.get()
    assert run.zones == {"Asia/Tokyo": TOKYO_2AM.isoformat()} and run.stands_for == TOKYO_2AM
    assert f"Logged out the users of: Asia/Tokyo ({TOKYO_2AM.isoformat()})" in out
    if any_engine != "signed_cookies":
        assert not stored(alice) and stored(alice_late)
        assert stored(carol) and stored(teacher) and stored(visitor)
        assert "Successfully logged out all users by deleting 1 session(s)" in out
    assert is_signed_in(carol, "carol") and is_signed_in(teacher, "teacher")  # no site-wide cutoff
    assert is_signed_in(alice_late, "alice")

    clock(TOKYO_2AM + timedelta(hours=1, minutes=45))   # the next firing: nothing new has passed
    status, out = command("logout_all_users", "--scheduled")
    assert status == 3 and out.startswith("Not due: every zone's latest logout time has a run; the next is "), out
    assert "(Europe/Dublin)" in out

    clock(DUBLIN_2AM + timedelta(minutes=45))
    status, out = command("logout_all_users", "--scheduled")
    assert status == 0, out
    assert LogoutRun.objects.latest("started_at").zones == {"Europe/Dublin": DUBLIN_2AM.isoformat()}
    if any_engine != "signed_cookies":
        assert not stored(carol) and not stored(teacher)
        assert stored(alice_late)                        # Tokyo's next 02:00 has not come
    if any_engine in ("db", "cached_db"):
        # An anonymous session saved before the instant goes with the schedule's zone. (File mtimes
        # and Redis TTLs follow the real clock, not the pinned one, so there it looks saved since.)
        assert not stored(visitor)                        # Tokyo's next 02:00 has not come
    assert not is_signed_in(carol, "carol") and is_signed_in(alice_late, "alice")


def test_a_run_that_fires_late_stands_for_every_zone_it_missed(users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")
    give_zone(users["carol"], "Asia/Kolkata")           # UTC+5:30: its 02:00 is 20:30 UTC
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, carol = login("alice"), login("carol")
    clock(DUBLIN_2AM + timedelta(minutes=5))            # the host was down all night
    status, out = command("logout_all_users", "--scheduled")
    assert status == 0, out
    assert LogoutRun.objects.get().zones == {
        "Asia/Tokyo": TOKYO_2AM.isoformat(),
        "Asia/Kolkata": (D - DAY + timedelta(hours=20, minutes=30)).isoformat(),
        "Europe/Dublin": DUBLIN_2AM.isoformat(),
    }
    assert not stored(alice) and not stored(carol)


def test_a_run_for_one_zone_keeps_the_staff_it_is_told_to_keep(users, clock):
    per_user_schedule(clock, "--keep-staff")
    for user in users.values():
        give_zone(user, "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, teacher = login("alice"), login("teacher")
    clock(TOKYO_2AM + timedelta(minutes=30))
    status, out = command("logout_all_users", "--scheduled", "--keep-staff")
    assert status == 0, out
    assert not stored(alice) and stored(teacher)
    assert is_signed_in(teacher, "teacher")


# --- changing the schedule -----------------------------------------------------------------------

def test_moving_the_schedules_zone_forgives_no_passed_logout_of_users_without_one(users, clock):
    per_user_schedule(clock)
    clock(DUBLIN_2AM - timedelta(hours=1))
    carol = login("carol")                            # no zone of her own: Dublin's
    clock(DUBLIN_2AM + timedelta(minutes=30))
    status, out = command("logout_schedule", "--set", "02:00", "--timezone", "America/New_York", "--per-user-zones")
    assert status == 0, out
    assert not is_signed_in(carol, "carol")           # Dublin's 02:00 had passed for her session
    late = login("carol")                             # from now on: New York's
    assert late.session[ZONE_KEY] == "America/New_York"
    clock(DUBLIN_2AM + timedelta(hours=4, minutes=59))    # 01:59 in New York (UTC-5)
    assert is_signed_in(late, "carol")
    clock(DUBLIN_2AM + timedelta(hours=5, seconds=1))
    assert not is_signed_in(late, "carol")


def test_leaving_per_user_mode_forgives_no_zone_its_passed_logout(users, clock):
    per_user_schedule(clock)
    give_zone(users["alice"], "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, carol = login("alice"), login("carol")
    clock(TOKYO_2AM + timedelta(minutes=30))
    status, out = command("logout_schedule", "--set", "02:00", "--timezone", "Europe/Dublin")
    assert status == 0, out
    assert not is_signed_in(alice, "alice")          # Tokyo's 02:00 had passed for her session
    assert is_signed_in(carol, "carol")              # and changing the schedule logs nobody else out


def test_per_user_zones_goes_with_set(users):
    with pytest.raises(CommandError, match="--per-user-zones goes with --set"):
        command("logout_schedule", "--show", "--per-user-zones")


def test_show_json_says_per_user_zones(users, clock):
    per_user_schedule(clock)
    status, out = command("logout_schedule", "--show", "--json")
    assert '"per_user_zones": true' in out


def test_the_schedule_zone_is_what_a_user_without_one_is_shown(users, clock):
    per_user_schedule(clock)
    clock(D + timedelta(hours=1))
    page = login("carol").get("/accounts/time-zone/").content.decode()
    assert "Your time zone: <strong>Europe/Dublin</strong>." in page


# --- no scheduler: the site's own cleanup ----------------------------------------------------------

def test_the_sites_own_cleanup_deletes_each_zones_sessions_after_its_time(users, clock):
    from students import cleanup

    per_user_schedule(clock, "--scheduler", "none")
    give_zone(users["alice"], "Asia/Tokyo")
    clock(TOKYO_2AM - timedelta(hours=1))
    alice, carol = login("alice"), login("carol")
    clock(TOKYO_2AM + timedelta(minutes=30))
    cleanup.clean_up()
    assert not stored(alice) and stored(carol)
    alice_again = login("alice")
    clock(DUBLIN_2AM + timedelta(minutes=30))
    cleanup.clean_up()
    assert not stored(carol) and stored(alice_again)
