"""The warning before the logout (issue 15, part 1): the banner on signed-in pages inside the window
and nowhere else, the status endpoint that ends the session only once its time has passed, the
login page's reason (never after a logout by hand), the switch recorded with the schedule, and no
query added for anonymous requests.

Django's clock is pinned (conftest.clock) to moments of day D; the schedule is 02:00 UTC unless a
test says otherwise."""
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.management import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from students import cutoff
from students.schedule import DAY
from students.models import LogoutSchedule
from students.tests.helpers import D, command, is_signed_in, login, stored

pytestmark = pytest.mark.django_db

BANNER = re.compile(r'<div id="logout-warning"[^>]*>\s*(.*?)\s*</div>', re.S)
REASON = "You were signed out by the nightly logout at 02:00."
STATUS_URL = "/nightly-logout/status/"


def schedule(clock, *options, warn="15"):
    """Record the 02:00 UTC schedule the day before D, with the warning unless warn is None."""
    clock(D - DAY + timedelta(hours=12))
    args = ["--set", "02:00", "--timezone", "UTC", *options] + (["--warn-minutes", warn] if warn else [])
    status, out = command("logout_schedule", *args)
    assert status == 0, out


def warned(clock, username="alice"):
    """`username` signed in at 01:00 under the schedule with the warning; the clock at 01:50, inside
    the window. Returns the client and the token its page carries."""
    schedule(clock)
    clock(D + timedelta(hours=1))
    client = login(username)
    clock(D + timedelta(hours=1, minutes=50))
    return client, page_token(client)


def banner_text(client):
    """The banner's text as a person reads it with JavaScript off ("" when there is none)."""
    response = client.get("/")
    assert response.status_code == 200
    found = BANNER.search(response.content.decode())
    return re.sub(r"<[^>]+>", "", found[1]) if found else ""


def page_token(client):
    return re.search(r'data-token="([^"]+)"', client.get("/").content.decode())[1]


def ask(client, token, next_page="/"):
    response = client.get(STATUS_URL, {"token": token, "next": next_page})
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    return response.json()


# --- the banner ------------------------------------------------------------------------------------

def test_the_banner_shows_inside_the_window_with_the_time_and_minutes_left(users, clock):
    schedule(clock)
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=1, minutes=48))
    assert banner_text(alice) == "You will be signed out at 02:00 (in 12 minutes). Save your work."
    clock(D + timedelta(hours=1, minutes=59, seconds=30))
    assert banner_text(alice) == "You will be signed out at 02:00 (in 1 minute). Save your work."
    html = alice.get("/").content.decode()
    assert 'data-seconds-left="30.000"' in html and "students/logout_warning.js" in html


def test_no_banner_outside_the_window(users, clock):
    schedule(clock)
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=1, minutes=44, seconds=59))         # 15 min 1 s before
    assert banner_text(alice) == ""
    html = alice.get("/").content.decode()
    assert "You will be signed out" not in html
    assert '<div id="logout-warning"' in html and " hidden" in html   # the script opens it in time
    clock(D + timedelta(hours=1, minutes=45))
    assert banner_text(alice).startswith("You will be signed out at 02:00 (in 15 minutes)")
    clock(D + timedelta(hours=2, minutes=1))                     # after the logout, a new login
    alice = login("alice")
    assert "You will be signed out" not in alice.get("/").content.decode()  # next: tomorrow 02:00


def test_no_banner_for_kept_users(users, clock):
    schedule(clock, "--keep-staff", "--exclude-user", "carol")
    clock(D + timedelta(hours=1))
    alice, carol, teacher = login("alice"), login("carol"), login("teacher")
    clock(D + timedelta(hours=1, minutes=50))
    assert banner_text(alice).startswith("You will be signed out at 02:00")
    for kept in (carol, teacher):
        assert 'id="logout-warning"' not in kept.get("/").content.decode()
    clock(D + timedelta(hours=2, seconds=1))
    assert not is_signed_in(alice, "alice")
    assert is_signed_in(carol, "carol") and is_signed_in(teacher, "teacher")


@pytest.mark.parametrize("recorded", ["without --warn-minutes", "no schedule"])
def test_no_banner_when_the_warning_is_off(users, clock, recorded):
    if recorded == "without --warn-minutes":
        schedule(clock, warn=None)
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=1, minutes=55))
    assert 'id="logout-warning"' not in alice.get("/").content.decode()


def test_the_time_shown_is_the_schedules_local_time(users, clock):
    """Europe/Dublin in summer (IST, UTC+1): 02:00 local is 01:00 UTC, and the page says 02:00."""
    summer = datetime(D.year + 1, 7, 1, tzinfo=UTC)
    clock(summer - DAY)
    assert command("logout_schedule", "--set", "02:00", "--timezone", "Europe/Dublin", "--warn-minutes", "30")[0] == 0
    clock(summer)
    alice = login("alice")
    clock(summer + timedelta(minutes=40))                        # 01:40 IST
    assert banner_text(alice) == "You will be signed out at 02:00 (in 20 minutes). Save your work."


# --- the status endpoint and the login page's reason -----------------------------------------------

def test_the_endpoint_ends_the_session_only_after_the_instant(users, clock):
    alice, token = warned(clock)
    clock(D + timedelta(hours=1, minutes=59, seconds=59))
    answer = ask(alice, token)
    assert answer["signed_in"] is True and stored(alice)
    assert answer["warning"]["time"] == "02:00" and answer["warning"]["seconds_left"] == pytest.approx(1)
    assert answer["warning"]["at"] == (D + timedelta(hours=2)).timestamp()

    clock(D + timedelta(hours=2, seconds=1))
    old_cookie = alice.cookies["sessionid"].value
    answer = ask(alice, token, next_page="/accounts/password_change/")
    assert answer["signed_in"] is False
    assert alice.cookies["sessionid"].value == ""                  # the response dropped the cookie
    assert not Session.objects.filter(pk=old_cookie).exists()
    login_url = urlsplit(answer["login_url"])
    assert login_url.path == "/accounts/login/"
    assert parse_qs(login_url.query)["next"] == ["/accounts/password_change/"]
    page = Client().get(answer["login_url"])                       # the other tab, cookie gone too
    assert page.status_code == 200 and REASON in page.content.decode()
    stale = Client()
    stale.cookies["sessionid"] = old_cookie                        # the old cookie gets the login page
    assert not is_signed_in(stale, "alice")


def test_no_reason_after_a_logout_by_hand(users, clock):
    alice, token = warned(clock)
    response = alice.post("/accounts/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "signed out by the nightly logout" not in response.content.decode()
    answer = ask(alice, token)                                     # before 02:00: no reason either
    assert answer == {"signed_in": False, "login_url": "/accounts/login/?next=%2F"}


@pytest.mark.parametrize("case", ["forged", "a page token", "expired", "garbage"])
def test_the_login_page_shows_no_reason_it_cannot_vouch_for(users, clock, case):
    alice, token = warned(clock)
    clock(D + timedelta(hours=2, seconds=1))
    reason_token = parse_qs(urlsplit(ask(alice, token)["login_url"]).query)["signed_out"][0]
    assert REASON in Client().get("/accounts/login/", {"signed_out": reason_token}).content.decode()
    shown = {"forged": reason_token[:-2] + ("AA" if not reason_token.endswith("AA") else "BB"),
             "a page token": token, "expired": reason_token, "garbage": "nightly"}[case]
    if case == "expired":
        clock(D + timedelta(hours=2, minutes=11))
    page = Client().get("/accounts/login/", {"signed_out": shown}).content.decode()
    assert "signed out by the nightly logout" not in page


def test_the_endpoint_keeps_a_kept_user_signed_in(users, clock):
    carol, token = warned(clock, "carol")
    clock(D + timedelta(hours=1, minutes=55))                      # carol is now excluded
    assert command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--warn-minutes", "15",
                   "--exclude-user", "carol")[0] == 0
    clock(D + timedelta(hours=2, seconds=1))
    assert ask(carol, token) == {"signed_in": True, "warning": None}
    assert stored(carol)


# --- the cost --------------------------------------------------------------------------------------

def reads(client, path):
    """(database queries, cache reads) of one page view; the cache's real methods, counted."""
    counted = []
    with pytest.MonkeyPatch.context() as spy, CaptureQueriesContext(connection) as captured:
        for name in ("get", "get_many"):
            real = getattr(cache, name)
            spy.setattr(cache, name, lambda *args, _real=real, **kwargs: counted.append(1) or _real(*args, **kwargs))
        assert client.get(path).status_code in (200, 302)
    return len(captured), len(counted)


@pytest.fixture
def slow_machine(monkeypatch):
    """The cached schedule outlives the test however slow the machine: a miss (a query) every
    cutoff.CACHE_SECONDS is the documented cost, not what these tests measure."""
    monkeypatch.setattr(cutoff, "CACHE_SECONDS", 3600)


def test_no_query_for_anonymous_requests(users, clock, slow_machine, django_assert_num_queries):
    schedule(clock)
    clock(D + timedelta(hours=1, minutes=50))
    visitor = Client()
    with django_assert_num_queries(0):
        assert visitor.get("/accounts/login/").status_code == 200
    with django_assert_num_queries(0):
        assert visitor.get("/").status_code == 302
    with django_assert_num_queries(0):
        assert visitor.get(STATUS_URL, {"token": "x"}).json()["signed_in"] is False


def test_the_banner_adds_no_query_and_no_cache_read_to_a_signed_in_page(users, clock, slow_machine, settings):
    schedule(clock)
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=1, minutes=50))
    reads(alice, "/")                                              # the schedule is now in the cache
    shown = reads(alice, "/")
    assert "You will be signed out" in alice.get("/").content.decode()
    # Today's cost: the same page with no banner code at all.
    options = settings.TEMPLATES[0]["OPTIONS"]
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "OPTIONS": {**options, "context_processors": [
        name for name in options["context_processors"] if name != "students.warning.context"]}}]
    assert "You will be signed out" not in alice.get("/").content.decode()
    assert reads(alice, "/") == shown


# --- the switch, recorded with the schedule ---------------------------------------------------------

def test_warn_minutes_is_recorded_shown_and_changed_without_logging_anyone_out(users, clock):
    schedule(clock, warn=None)
    assert LogoutSchedule.objects.get().warn_minutes == 0
    status, out = command("logout_schedule", "--show", "--json")
    assert "warn_minutes" not in json.loads(out)["schedule"]        # absent: no banner
    clock(D + timedelta(hours=1))
    alice = login("alice")
    clock(D + timedelta(hours=1, minutes=50))
    status, out = command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--warn-minutes", "20", "--json")
    assert status == 0 and json.loads(out)["changed"] is True
    assert json.loads(out)["schedule"]["warn_minutes"] == 20
    assert LogoutSchedule.objects.get().warn_minutes == 20
    status, out = command("logout_schedule", "--show")
    assert "daily at 02:00 UTC, scheduler cron, keeps nobody, warns 20 minutes before" in out
    assert is_signed_in(alice, "alice")
    assert banner_text(alice).startswith("You will be signed out at 02:00 (in 10 minutes)")
    clock(D + timedelta(hours=2))
    assert not is_signed_in(alice, "alice")                       # the cutoff still holds


@pytest.mark.parametrize("value", ["0", "721", "-5", "ten", "1.5"])
def test_bad_warn_minutes_are_refused(users, value):
    with pytest.raises(CommandError) as raised:
        command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--warn-minutes", value)
    assert f"argument --warn-minutes: must be a whole number of minutes from 1 to 720, not '{value}'" in \
        str(raised.value)
    assert not LogoutSchedule.objects.exists()


def test_warn_minutes_goes_with_set(users):
    with pytest.raises(CommandError, match="--warn-minutes goes with --set"):
        command("logout_schedule", "--show", "--warn-minutes", "15")

