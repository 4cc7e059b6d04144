""""Keep me signed in" (issue 15, part 2): the checkbox offered only when the schedule says so, the
fixed expiry, the purge keeping remembered sessions on every engine (and a scheduled run too), the
clock and run cutoffs keeping them, no banner for them, and forged claims not kept.

Storage is looked at directly (the row, the Redis key, the file); the old cookie is tried on a
page. Django's clock is pinned (conftest.clock) where a test needs the time of day."""
import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from students import cleanup
from students.schedule import DAY
from students.models import LogoutRun, LogoutSchedule, RememberedLogin
from students.selection import REMEMBERED_KEY
from students.tests.helpers import (D, PASSWORD, command, in_storage, is_signed_in, key_of, login,
                                     login_remembered, offer, use_engine, without_cutoff_middleware)

pytestmark = pytest.mark.django_db
CHECKBOX = 'name="remember"'


@pytest.fixture(params=["db", "cached_db-on-redis", "file", "cache-on-redis"])
def kind(request, settings, tmp_path):
    name = request.param.removesuffix("-on-redis")
    redis_url = request.getfixturevalue("redis_server") if request.param.endswith("-on-redis") else None
    use_engine(settings, tmp_path, name, redis_url=redis_url)
    return name


# --- the login page ---------------------------------------------------------------------------------

def test_the_checkbox_shows_only_when_the_schedule_offers_it(users):
    assert CHECKBOX not in Client().get("/accounts/login/").content.decode()
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    assert CHECKBOX not in Client().get("/accounts/login/").content.decode()
    offer()
    page = Client().get("/accounts/login/").content.decode()
    assert CHECKBOX in page and "Keep me signed in" in page


def test_a_tick_is_ignored_when_not_offered(users):
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")
    client = login_remembered("alice")
    assert REMEMBERED_KEY not in client.session and not RememberedLogin.objects.exists()


def test_a_remembered_login_is_marked_recorded_and_expires_from_the_login_not_sliding(users, clock, settings):
    settings.SESSION_SAVE_EVERY_REQUEST = True  # every request saves the session: a sliding expiry would move
    offer(clock)
    clock(D + timedelta(hours=1))
    alice, carol = login_remembered("alice"), login("carol")
    clock(D + timedelta(hours=1, minutes=30))
    assert is_signed_in(alice, "alice") and is_signed_in(carol, "carol")
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert Session.objects.get(pk=key_of(alice)).expire_date == D + timedelta(hours=1) + age
    assert Session.objects.get(pk=key_of(carol)).expire_date == D + timedelta(hours=1, minutes=30) + age  # slides
    row = RememberedLogin.objects.get()
    assert (row.session_key, row.user_id) == (key_of(alice), str(users["alice"].pk))
    assert row.expires_at == D + timedelta(hours=1) + age
    assert alice.session[REMEMBERED_KEY] is True and REMEMBERED_KEY not in carol.session


# --- the purge --------------------------------------------------------------------------------------

def test_the_purge_keeps_remembered_sessions_on_every_engine(kind, users):
    offer()
    alice, carol = login_remembered("alice"), login("carol")
    status, out = command("logout_all_users", "--keep-remembered")
    assert status == 0, out
    assert "deleting 1 session(s)" in out and "Kept 1 session(s) (remembered sessions)" in out
    assert in_storage(kind, key_of(alice)) and not in_storage(kind, key_of(carol))
    assert list(RememberedLogin.objects.values_list("session_key", flat=True)) == [key_of(alice)]
    assert is_signed_in(alice, "alice") and not is_signed_in(carol, "carol")  # the run's cutoff keeps her too
    assert LogoutRun.objects.get().keep_remembered


def test_a_password_change_keeps_the_login_remembered(kind, users):
    """Django gives the session a new key on a password change (update_session_auth_hash); the row
    the server wrote at login follows it, so the purge still keeps the session (issue 20)."""
    offer()
    alice, carol = login_remembered("alice"), login("carol")
    old_key = key_of(alice)
    new_password = "Lantern-trombone-91"
    response = alice.post("/accounts/password_change/", {
        "old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password})
    assert response.status_code == 302 and response["Location"] == "/accounts/password_change/done/", \
        response.content[:500]
    new_key = key_of(alice)
    assert new_key != old_key and not in_storage(kind, old_key)

    status, out = command("logout_all_users", "--keep-remembered")

    assert status == 0 and "Kept 1 session(s) (remembered sessions)" in out, out
    assert in_storage(kind, new_key) and not in_storage(kind, key_of(carol))
    assert list(RememberedLogin.objects.values_list("session_key", "user_id")) == [(new_key, str(users["alice"].pk))]
    assert is_signed_in(alice, "alice") and not is_signed_in(carol, "carol")


def test_without_the_option_remembered_sessions_go_too(kind, users):
    offer()
    alice = login_remembered("alice")
    status, out = command("logout_all_users")
    assert status == 0 and "deleting 1 session(s)" in out
    assert not in_storage(kind, key_of(alice)) and not is_signed_in(alice, "alice")


def test_a_scheduled_run_keeps_remembered_sessions(kind, users, clock):
    offer(clock)
    clock(D + timedelta(hours=1))
    alice, carol = login_remembered("alice"), login("carol")
    clock(D + timedelta(hours=7))
    late = login("teacher")  # after the 02:00 the run stands for: spared as always
    clock(D + timedelta(hours=8))
    status, out = command("logout_all_users", "--scheduled", "--keep-remembered")
    assert status == 0, out
    assert in_storage(kind, key_of(alice)) and in_storage(kind, key_of(late))
    assert not in_storage(kind, key_of(carol))
    assert is_signed_in(alice, "alice") and is_signed_in(late, "teacher") and not is_signed_in(carol, "carol")


def test_a_dry_run_counts_them_and_changes_nothing(users):
    offer()
    login_remembered("alice")
    login("carol")
    status, out = command("logout_all_users", "--keep-remembered", "--dry-run")
    assert status == 0 and "Would keep 1 session(s) (remembered sessions)" in out
    assert "Would log out all users by deleting 1 session(s)" in out
    assert Session.objects.count() == 2 and RememberedLogin.objects.count() == 1


def test_a_row_whose_session_is_gone_is_cleaned_up(users):
    offer()
    alice = login_remembered("alice")
    alice.post("/accounts/logout/")
    assert RememberedLogin.objects.count() == 1
    command("logout_all_users", "--keep-remembered")
    assert not RememberedLogin.objects.exists()


# --- forged claims ----------------------------------------------------------------------------------

def forge_marker(client):
    """Write the marker into a session's stored data, signed as the server would: no row for it."""
    store = Client().session.__class__(key_of(client))
    store[REMEMBERED_KEY] = True
    store.save()


def spoil_signature(kind, client):
    key = key_of(client)
    if kind == "file":
        path = os.path.join(settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME + key)
        data = open(path).read()
        open(path, "w").write(data[:-1] + ("A" if data[-1] != "A" else "B"))
    else:
        row = Session.objects.get(pk=key)
        Session.objects.filter(pk=key).update(session_data=row.session_data[:-1] + (
            "A" if row.session_data[-1] != "A" else "B"))


@pytest.fixture(params=["db", "file"])
def signed_kind(request, settings, tmp_path):
    use_engine(settings, tmp_path, request.param)
    without_cutoff_middleware(settings)  # what is checked here is what the purge keeps
    return request.param


def test_a_marker_without_a_row_is_not_kept(signed_kind, users):
    offer()
    carol = login("carol")
    forge_marker(carol)
    command("logout_all_users", "--keep-remembered")
    assert not in_storage(signed_kind, key_of(carol)) and not is_signed_in(carol, "carol")


def test_a_row_whose_data_has_a_bad_signature_is_not_kept(signed_kind, users):
    offer()
    alice = login_remembered("alice")
    spoil_signature(signed_kind, alice)
    status, out = command("logout_all_users", "--keep-remembered")
    assert status == 0 and "Kept 0 session(s)" in out
    assert not in_storage(signed_kind, key_of(alice)) and not RememberedLogin.objects.exists()


def test_a_row_pointing_at_another_users_session_is_not_kept(signed_kind, users):
    offer()
    alice, carol = login_remembered("alice"), login_remembered("carol")
    # alice's row now names carol's session, and a row names a plain session of the teacher as alice's
    teacher = login("teacher")
    RememberedLogin.objects.filter(session_key=key_of(alice)).update(session_key=key_of(teacher))
    RememberedLogin.objects.filter(session_key=key_of(carol)).update(user_id=str(users["alice"].pk))
    command("logout_all_users", "--keep-remembered")
    for client in (alice, carol, teacher):
        assert not in_storage(signed_kind, key_of(client))
    assert not RememberedLogin.objects.exists()


@pytest.mark.parametrize("worker", ["forked", "none"])
def test_checks_split_with_a_worker_process_keep_exactly_the_sound_claims(worker, users, settings, tmp_path,
                                                                          monkeypatch):
    """With pages of one row, the claims are checked in turn in the forked worker and here
    (remembered._passing_rows); where no worker process can start, all of them here."""
    import students.purge.common
    import students.purge.remembered

    def no_semaphores(**kwargs):  # what multiprocessing raises where /dev/shm is missing
        raise OSError(38, "Function not implemented")

    use_engine(settings, tmp_path, "db")
    without_cutoff_middleware(settings)
    monkeypatch.setattr(students.purge.remembered, "PAGE", 1)
    if worker == "none":
        monkeypatch.setattr(students.purge.common, "ProcessPoolExecutor", no_semaphores)
    offer()
    sound = [login_remembered(name) for name in ("alice", "alice", "carol", "teacher")]
    spoiled, forged = login_remembered("carol"), login_remembered("alice")
    spoil_signature("db", spoiled)
    RememberedLogin.objects.filter(session_key=key_of(forged)).update(user_id=str(users["carol"].pk))
    status, out = command("logout_all_users", "--keep-remembered")
    assert status == 0 and "Kept 4 session(s) (remembered sessions)" in out
    assert [in_storage("db", key_of(client)) for client in sound] == [True] * 4
    assert not in_storage("db", key_of(spoiled)) and not in_storage("db", key_of(forged))
    assert sorted(RememberedLogin.objects.values_list("session_key", flat=True)) == sorted(map(key_of, sound))


def test_an_expired_remembered_login_is_not_kept(users, clock):
    offer(clock)
    clock(D + timedelta(hours=1))
    alice = login_remembered("alice")
    clock(D + timedelta(hours=1, seconds=settings.SESSION_COOKIE_AGE + 1))
    status, out = command("logout_all_users", "--keep-remembered")
    assert status == 0 and "cleaned up 1 expired session(s)" in out
    assert not Session.objects.filter(pk=key_of(alice)).exists() and not RememberedLogin.objects.exists()


# --- the cutoffs and the banner ---------------------------------------------------------------------

def test_the_clock_cutoff_keeps_remembered_sessions_only_while_the_schedule_does(users, clock):
    offer(clock)
    clock(D + timedelta(hours=1))
    alice, carol = login_remembered("alice"), login("carol")
    clock(D + timedelta(hours=2, seconds=1))  # past 02:00, no job ran
    assert is_signed_in(alice, "alice") and not is_signed_in(carol, "carol")
    command("logout_schedule", "--set", "02:00", "--timezone", "UTC")  # switched off
    clock(D + DAY + timedelta(hours=2, seconds=1))
    assert not is_signed_in(alice, "alice")


def test_a_run_without_the_option_sets_a_cutoff_that_ends_them(users, settings, tmp_path):
    use_engine(settings, tmp_path, "signed_cookies")  # nothing to purge: the cutoff alone decides
    offer()
    alice, carol = login_remembered("alice"), login_remembered("carol")
    command("logout_all_users", "--keep-remembered")
    assert is_signed_in(alice, "alice")
    command("logout_all_users")
    assert not is_signed_in(carol, "carol")


def test_no_banner_for_a_remembered_session(users, clock):
    offer(clock, "--warn-minutes", "15")
    clock(D + timedelta(hours=1))
    alice, carol = login_remembered("alice"), login("carol")
    clock(D + timedelta(hours=1, minutes=50))
    assert 'id="logout-warning"' not in alice.get("/").content.decode()
    assert 'id="logout-warning"' in carol.get("/").content.decode()


def test_the_sites_own_cleanup_keeps_remembered_sessions(users, clock):
    offer(clock, "--scheduler", "none")  # no job: the site deletes cut-off sessions itself
    clock(D + timedelta(hours=1))
    alice, carol = login_remembered("alice"), login("carol")
    teacher = login("teacher")
    forge_marker(teacher)  # claims to be remembered, no row
    clock(D + timedelta(hours=4))
    cleanup.clean_up()
    assert Session.objects.filter(pk=key_of(alice)).exists()
    assert not Session.objects.filter(pk__in=[key_of(carol), key_of(teacher)]).exists()
    assert is_signed_in(alice, "alice")


# --- the switch -------------------------------------------------------------------------------------

def test_keep_remembered_is_recorded_shown_and_goes_with_set(users):
    offer()
    assert LogoutSchedule.objects.get().keep_remembered
    status, out = command("logout_schedule", "--show", "--json")
    assert '"keep_remembered": true' in out
    status, out = command("logout_schedule", "--show")
    assert "remembered sessions" in out
    with pytest.raises(Exception, match="--keep-remembered goes with --set"):
        command("logout_schedule", "--show", "--keep-remembered")
