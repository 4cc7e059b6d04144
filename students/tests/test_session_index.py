"""The ownership index (issue 22): rows written at login, moved with the key, deleted at logout, on
every engine that stores sessions on the server and never on signed cookies; nothing on a page view;
`logout_all_users --user` and the user admin's action; the maximum session age; the "Your sessions"
page and "Sign out my other sessions".

Storage is looked at directly (test_remember.in_storage: the row, the Redis key, the file), and the
old cookie is tried on a page (helpers.is_signed_in)."""
from datetime import UTC, datetime, timedelta
import json
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from students import health, session_index
from students.schedule import DAY
from students.models import LogoutRun, RememberedLogin, SessionOwner
from students.selection import LOGIN_TIME_KEY, ZONE_KEY
from students.tests.helpers import (D, PASSWORD, command, in_storage, is_signed_in, key_of, login_remembered, offer,
                                     use_engine)

pytestmark = pytest.mark.django_db

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")


@pytest.fixture(params=["db", "cached_db-on-redis", "file", "cache-on-redis", "signed_cookies"])
def kind(request, settings, tmp_path):
    name = request.param.removesuffix("-on-redis")
    redis_url = request.getfixturevalue("redis_server") if request.param.endswith("-on-redis") else None
    use_engine(settings, tmp_path, name, redis_url=redis_url)
    return name


def sign_in(username, user_agent=FIREFOX, **extra):
    client = Client(HTTP_USER_AGENT=user_agent, **extra)
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    assert is_signed_in(client, username)
    return client


def rows():
    return {row.session_key: row for row in SessionOwner.objects.all()}


def fingerprint(kind, clients):
    """What storage holds: every row, every run, and which of these browsers' sessions exist."""
    return (sorted(SessionOwner.objects.values_list("session_key", "user_id")), LogoutRun.objects.count(),
            [in_storage(kind, key_of(c)) if kind != "signed_cookies" else None for c in clients])


# --- the write path ---------------------------------------------------------------------------------

def test_a_login_writes_one_row_on_server_engines_and_none_for_signed_cookies(kind, users):
    alice = sign_in("alice", user_agent="X" * 400)
    if kind == "signed_cookies":
        assert not SessionOwner.objects.exists()
        return
    row = SessionOwner.objects.get()
    assert row.session_key == key_of(alice) and in_storage(kind, row.session_key)
    assert row.user_id == str(users["alice"].pk)
    assert row.logged_in_at == datetime.fromtimestamp(alice.session[LOGIN_TIME_KEY], UTC)
    assert row.zone == alice.session[ZONE_KEY] == ""
    assert row.user_agent == "X" * 300
    assert row.ip_address is None  # no IP unless LOGOUT_SESSIONS_STORE_IP asks


def test_a_login_over_a_key_that_has_a_row_replaces_it(users):
    """The row is written by an upsert: a key that already has one (a stale or forged row) gets this
    login's user, time and browser, and stays one row."""
    alice = sign_in("alice")
    SessionOwner.objects.filter(session_key=key_of(alice)).update(
        user_id=str(users["carol"].pk), zone="Asia/Tokyo", logged_in_at=D, user_agent="forged", ip_address="192.0.2.1")
    request = RequestFactory(HTTP_USER_AGENT=IPHONE).get("/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key_of(alice))
    session_index.record_login(None, request, users["alice"])
    row = SessionOwner.objects.get()
    assert (row.session_key, row.user_id, row.zone, row.user_agent, row.ip_address) == (
        key_of(alice), str(users["alice"].pk), "", IPHONE, None)
    assert row.logged_in_at == datetime.fromtimestamp(alice.session[LOGIN_TIME_KEY], UTC)


def test_the_ip_is_stored_only_when_the_setting_asks(users, settings):
    sign_in("alice", REMOTE_ADDR="203.0.113.7")
    assert SessionOwner.objects.get().ip_address is None
    settings.LOGOUT_SESSIONS_STORE_IP = True
    carol = sign_in("carol", REMOTE_ADDR="203.0.113.9")
    assert SessionOwner.objects.get(session_key=key_of(carol)).ip_address == "203.0.113.9"


def test_the_zone_stamp_is_copied(users):
    command("logout_schedule", "--set", "02:00", "--timezone", "Europe/Dublin")
    alice = sign_in("alice")
    assert SessionOwner.objects.get(session_key=key_of(alice)).zone == "Europe/Dublin"


def test_logout_deletes_the_row(kind, users):
    alice, carol = sign_in("alice"), sign_in("carol")
    assert alice.post("/accounts/logout/").status_code == 302
    assert not is_signed_in(alice, "alice")
    expected = [] if kind == "signed_cookies" else [key_of(carol)]
    assert list(SessionOwner.objects.values_list("session_key", flat=True)) == expected


def test_logging_in_again_over_a_session_leaves_one_row(kind, users):
    client = sign_in("alice")
    first = key_of(client)
    client.post("/accounts/login/", {"username": "carol", "password": PASSWORD})  # another user, same browser
    assert is_signed_in(client, "carol") and key_of(client) != first
    expected = {} if kind == "signed_cookies" else {key_of(client): str(users["carol"].pk)}
    assert {k: r.user_id for k, r in rows().items()} == expected


def test_a_password_change_moves_the_row_and_keeps_the_login_remembered(kind, users):
    offer()
    alice = login_remembered("alice")
    old_key = key_of(alice)
    new_password = "Lantern-trombone-91"
    response = alice.post("/accounts/password_change/", {
        "old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password})
    assert response.status_code == 302, response.content[:300]
    assert key_of(alice) != old_key and is_signed_in(alice, "alice")
    if kind == "signed_cookies":
        assert not SessionOwner.objects.exists()
        return
    assert list(rows()) == [key_of(alice)] and rows()[key_of(alice)].user_id == str(users["alice"].pk)
    assert list(RememberedLogin.objects.values_list("session_key", flat=True)) == [key_of(alice)]
    status, out = command("logout_all_users", "--keep-remembered")
    assert status == 0, out
    assert in_storage(kind, key_of(alice)) and is_signed_in(alice, "alice")


def test_an_ordinary_page_view_adds_no_query(users, monkeypatch):
    alice = sign_in("alice")
    alice.get("/")  # caches warm
    with CaptureQueriesContext(connection) as with_index:
        assert alice.get("/").status_code == 200
    monkeypatch.setattr(session_index, "follow_new_key", lambda request, old_key: None)
    with CaptureQueriesContext(connection) as without_index:
        assert alice.get("/").status_code == 200
    assert len(with_index) == len(without_index)
    assert not [q for q in with_index.captured_queries if "sessionowner" in q["sql"].lower()]


# --- logout_all_users --user --------------------------------------------------------------------------

def test_user_ends_every_session_of_that_user_and_nobody_elses(kind, users):
    alice_1, alice_2, carol = sign_in("alice"), sign_in("alice", IPHONE), sign_in("carol")
    status, out = command("logout_all_users", "--user", "alice")
    assert status == 0, out
    server = kind != "signed_cookies"
    assert f"Logged out alice now by deleting {2 if server else 0} indexed session(s)" in out
    assert "Purge work: " in out and " ms (run " in out
    if server:
        assert not in_storage(kind, key_of(alice_1)) and not in_storage(kind, key_of(alice_2))
        assert in_storage(kind, key_of(carol))
        assert list(rows()) == [key_of(carol)]
    run = LogoutRun.objects.get()
    assert (run.only_user_ids, run.only_usernames, run.outcome) == ([str(users["alice"].pk)], ["alice"], "success")
    assert not is_signed_in(alice_1, "alice") and not is_signed_in(alice_2, "alice")  # the old cookies
    assert is_signed_in(carol, "carol")
    assert is_signed_in(sign_in("alice"), "alice")  # a new login is not caught by her cutoff


@pytest.mark.parametrize("schedule", [False, True])
def test_user_ends_an_unindexed_session_through_the_cutoff(users, schedule):
    """A session from before the index (its row gone) ends at its next request, with or without a
    recorded schedule (whose clock cutoffs are read with the run's)."""
    if schedule:
        command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    alice = sign_in("alice")
    SessionOwner.objects.all().delete()
    command("logout_all_users", "--user", "alice")
    assert Session.objects.filter(pk=key_of(alice)).exists()  # the index did not know it
    assert not is_signed_in(alice, "alice")


def test_a_user_run_neither_replaces_the_nightly_cutoff_nor_ends_anyone_else(users, settings, tmp_path):
    """After a --user run the latest site-wide cutoff still ends every session older than it, and the
    --user run's cutoff ends nobody but its users."""
    use_engine(settings, tmp_path, "signed_cookies")
    alice = sign_in("alice")  # and makes no request between the runs
    assert command("logout_all_users", "--keep-staff")[0] == 0
    carol = sign_in("carol")
    assert command("logout_all_users", "--user", "teacher")[0] == 0
    assert not is_signed_in(alice, "alice")
    assert is_signed_in(carol, "carol")


@pytest.mark.parametrize("unknown", [["nobody"], ["alice", "nobody", "ghost"]])
def test_user_with_an_unknown_name_changes_nothing(kind, users, unknown):
    clients = [sign_in("alice"), sign_in("carol")]
    before = fingerprint(kind, clients)
    with pytest.raises(Exception) as raised:
        command("logout_all_users", *[a for name in unknown for a in ("--user", name)])
    message = str(raised.value)
    assert "unknown username(s) for --user" in message and "nothing was done" in message
    assert all(name in message for name in unknown if name != "alice") and "alice" not in message
    assert fingerprint(kind, clients) == before
    assert is_signed_in(clients[0], "alice") and is_signed_in(clients[1], "carol")


@pytest.mark.parametrize("option", [["--keep-staff"], ["--exclude-user", "carol"], ["--scheduled"],
                                    ["--dry-run"], ["--keep-remembered"], ["--batch-size", "5"]])
def test_user_refuses_options_that_would_mean_something_else(users, option):
    alice = sign_in("alice")
    with pytest.raises(Exception) as raised:
        command("logout_all_users", "--user", "alice", *option)
    assert f"--user logs out the named users now and cannot be combined with {option[0]}" in str(raised.value)
    assert not LogoutRun.objects.exists() and is_signed_in(alice, "alice")


def test_user_json(users):
    sign_in("alice")
    status, out = command("logout_all_users", "--user", "alice", "--json")
    body = json.loads(out)
    assert status == 0 and body["deleted_sessions"] == 1 and body["usernames"] == ["alice"]
    assert body["run_id"] == LogoutRun.objects.get().pk and body["purge_ms"] >= 0


def test_a_user_run_is_not_the_nightly_run_for_the_health_check(users):
    command("logout_all_users", "--user", "alice")
    assert health.last_success() is None


# --- the user admin's action -------------------------------------------------------------------------

def test_the_admin_action_logs_the_selected_users_out(kind, users):
    users["teacher"].is_superuser = True
    users["teacher"].save()
    admin_client = sign_in("teacher")
    alice, carol = sign_in("alice"), sign_in("carol")
    response = admin_client.post("/admin/auth/user/", {
        "action": "log_out_now", "_selected_action": [users["alice"].pk]}, follow=True)
    assert response.status_code == 200
    ended = 0 if kind == "signed_cookies" else 1
    assert f"Logged out 1 user(s) now: {ended} session(s) ended" in response.content.decode()
    run = LogoutRun.objects.get()
    assert run.only_usernames == ["alice"] and run.deleted_active == ended
    assert not is_signed_in(alice, "alice") and is_signed_in(carol, "carol") and is_signed_in(admin_client, "teacher")


def test_the_admin_action_needs_the_change_permission(users):
    from django.contrib.auth.models import Permission
    users["teacher"].user_permissions.add(Permission.objects.get(codename="view_user"))  # may look, not change
    staff = sign_in("teacher")
    assert "Log out selected users now" not in staff.get("/admin/auth/user/").content.decode()
    alice = sign_in("alice")
    response = staff.post("/admin/auth/user/", {"action": "log_out_now", "_selected_action": [users["alice"].pk]})
    assert response.status_code in (200, 302)
    assert not LogoutRun.objects.exists() and is_signed_in(alice, "alice")


# --- the maximum session age --------------------------------------------------------------------------

def test_max_session_age_ends_old_sessions_remembered_ones_included(users, clock):
    offer(clock, "--max-session-age", "3")
    clock(D + timedelta(hours=3))  # after the 02:00 cutoff
    alice, carol = login_remembered("alice"), sign_in("carol")
    clock(D + timedelta(hours=5, minutes=59))
    assert is_signed_in(alice, "alice") and is_signed_in(carol, "carol")
    clock(D + timedelta(hours=6, minutes=1))
    assert not is_signed_in(alice, "alice") and not is_signed_in(carol, "carol")


def test_max_session_age_is_off_by_default_and_shown(users, clock):
    offer(clock)
    clock(D + timedelta(hours=3))
    alice = login_remembered("alice")
    clock(D + DAY)  # within SESSION_COOKIE_AGE, before the next day's 02:00
    assert is_signed_in(alice, "alice")
    status, out = command("logout_schedule", "--show", "--json")
    assert "max_session_age_hours" not in out
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--max-session-age", "8760")
    assert '"max_session_age_hours": 8760' in command("logout_schedule", "--show", "--json")[1]
    assert "ends sessions 8760 hours after login" in command("logout_schedule", "--show")[1]


@pytest.mark.parametrize("value", ["-1", "8761", "two", "1.5", ""])
def test_max_session_age_refuses_bad_values_naming_the_option(users, value):
    with pytest.raises(Exception) as raised:
        command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--max-session-age", value)
    assert "--max-session-age" in str(raised.value) and repr(value) in str(raised.value)
    assert command("logout_schedule", "--show", "--json")[1].startswith('{"latest_instant": null')


# --- "Your sessions" ----------------------------------------------------------------------------------

def test_the_page_lists_the_users_sessions_and_marks_this_one(kind, users):
    alice_1, alice_2 = sign_in("alice"), sign_in("alice", IPHONE)
    sign_in("carol")
    page = alice_1.get("/account/sessions/").content.decode()
    assert page.count('class="session') == (2 if kind != "signed_cookies" else 1)
    assert page.count("This session") == 1 and "Firefox on Windows" in page
    assert ("Safari on iPhone" in page) == (kind != "signed_cookies")
    assert 'href="/account/sessions/"' in alice_2.get("/").content.decode()  # linked from the pages
    assert Client().get("/account/sessions/")["Location"].startswith("/accounts/login/")


def test_the_page_shows_login_times_in_the_users_zone(users, clock):
    from students.models import UserTimeZone
    UserTimeZone.objects.create(user=users["alice"], zone="Asia/Tokyo")
    clock(D + timedelta(hours=1, minutes=30))
    page = sign_in("alice").get("/account/sessions/").content.decode()
    assert "Times are in Asia/Tokyo" in page
    assert (D + timedelta(hours=10, minutes=30)).strftime("%Y-%m-%d %H:%M") in page  # 01:30 UTC is 10:30 there


def test_sign_out_my_other_sessions_keeps_this_one(kind, users):
    this, other, elsewhere = sign_in("alice"), sign_in("alice", IPHONE), sign_in("carol")
    response = this.post("/account/sessions/", follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Signed out your other sessions" in page and "This session stays signed in" in page
    if kind != "signed_cookies":
        assert not in_storage(kind, key_of(other)) and in_storage(kind, key_of(this))
        assert set(rows()) == {key_of(this), key_of(elsewhere)}
    assert not is_signed_in(other, "alice")
    assert is_signed_in(this, "alice") and is_signed_in(elsewhere, "carol")
    assert is_signed_in(this, "alice")  # and still at the request after


def test_a_later_user_run_ends_the_spared_session_too(users):
    this = sign_in("alice")
    this.post("/account/sessions/")
    command("logout_all_users", "--user", "alice")
    assert not is_signed_in(this, "alice")


def test_sign_out_my_other_sessions_needs_csrf(users):
    client = Client(enforce_csrf_checks=True)
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    other = sign_in("alice")
    assert client.post("/account/sessions/").status_code == 403
    assert not LogoutRun.objects.exists() and is_signed_in(other, "alice")


@pytest.mark.parametrize("user_agent, words", [
    (FIREFOX, "Firefox on Windows"),
    (IPHONE, "Safari on iPhone"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
     "Chrome on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
     "Safari/537.36 Edg/126.0.2592.87", "Edge on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
     "Safari/605.1.15", "Safari on macOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile "
     "Safari/537.36", "Chrome on Android"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
     "Safari/537.36 OPR/111.0.0.0", "Opera on Windows"),
    ("curl/8.5.0", "Unknown browser on unknown system"),
    ("", "Unknown browser on unknown system"),
])
def test_describe_user_agent(user_agent, words):
    assert session_index.describe_user_agent(user_agent) == words


def test_the_session_store_api_is_what_deletes(users, settings, tmp_path):
    """A row naming a key that is not in storage (stale) deletes nothing and counts nothing."""
    alice = sign_in("alice")
    SessionOwner.objects.create(session_key="x" * 32, user_id=str(users["alice"].pk), logged_in_at=D)
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    assert store.exists(key_of(alice))
    ended = session_index.log_out_users(["alice"])
    assert ended.sessions == 1 and not SessionOwner.objects.exists() and not store.exists(key_of(alice))
