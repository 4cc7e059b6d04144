"""Selective purges through the ownership index (students.purge.owners, issue 22), on every engine
that stores sessions: db on SQLite (and, in the PostgreSQL re-run, on PostgreSQL), cached_db, file,
and cache on a real Redis.

The rows are written by the server at login (students.session_index); a forged or stale row is
written here as the server would write one: key = the session key, user_id = str(pk), zone = the
session's zone stamp, logged_in_at = its login time. Each test runs on a fully indexed store and on a mixed one (half the
logins indexed, half from before the index), looks at the store key by key, then at the index's
rows, then at the page each old cookie gets.
"""
from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.models import Session
from django.utils import timezone

from students.engines import detect_engine
from students.models import SessionOwner
from students.purge import owners, purge
from students.selection import LOGIN_TIME_KEY, ZONE_KEY, KeepRule
from students.tests.helpers import is_signed_in, login, run_command as run, use_engine

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["db", "cached_db", "file", "cache"])
def storing_engine(request, settings, tmp_path):
    redis_url = request.getfixturevalue("redis_server") if request.param == "cache" else None
    use_engine(settings, tmp_path, request.param, redis_url=redis_url)
    return request.param


def store_class():
    return import_module(settings.SESSION_ENGINE).SessionStore


def key_of(client):
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def exists(key):
    return store_class()().exists(key)


def index(key, user_id, logged_in_at=None):
    """Write (or overwrite, e.g. forge) a session's row as the server writes it at login, from the
    session's own data where it has it."""
    session = store_class()(key).load()
    stamp = session.get(LOGIN_TIME_KEY)
    SessionOwner.objects.update_or_create(session_key=key, defaults=dict(
        user_id=str(user_id), zone=session.get(ZONE_KEY, ""),
        logged_in_at=logged_in_at or (datetime.fromtimestamp(stamp, UTC) if stamp else timezone.now())))


def anonymous_visit():
    """A visitor who never signs in but has a session (the login page's CSRF does not store one)."""
    store = store_class()()
    store["cart"] = "anonymous visitor"
    store.save()
    return store.session_key


def logins(mixed):
    """Two sessions each for alice, carol and the teacher, and an anonymous one. Each login writes
    its row (students.session_index); mixed: the second session of each user loses its row, as a
    session from before the index has none."""
    tabs = {name: [login(name), login(name)] for name in ("alice", "carol", "teacher")}
    assert rows() == {key_of(tab) for pair in tabs.values() for tab in pair}
    if mixed:
        SessionOwner.objects.filter(session_key__in=[key_of(second) for _, second in tabs.values()]).delete()
    return tabs, anonymous_visit()


def rows():
    return set(SessionOwner.objects.values_list("session_key", flat=True))


@pytest.mark.parametrize("mixed", [False, True], ids=["all-indexed", "half-indexed"])
def test_keep_staff_through_the_index_keeps_exactly_the_staff(storing_engine, users, mixed):
    tabs, anonymous = logins(mixed)
    assert owners.in_use()

    run("--keep-staff")

    left = {name: [exists(key_of(tab)) for tab in tab_pair] for name, tab_pair in tabs.items()}
    assert left == {"alice": [False, False], "carol": [False, False], "teacher": [True, True]}
    assert not exists(anonymous)
    assert rows() == {key_of(tabs["teacher"][0])} | (set() if mixed else {key_of(tabs["teacher"][1])})
    assert [is_signed_in(tab, name) for name, pair in tabs.items() for tab in pair] == \
        [False, False, False, False, True, True]


def test_keep_staff_spares_a_kept_key_that_would_split_an_array_literal_and_nothing_else(users, settings, tmp_path):
    """Django's keys are letters and digits, but its session table holds any key it is given. On
    PostgreSQL the kept keys go to each range's DELETE as one text[] literal (common.array_items):
    a kept key with a quote, a comma, braces and a backslash spares itself, not the sessions its
    pieces would name."""
    use_engine(settings, tmp_path, "db")
    odd, pieces = 'kept"odd,key}{back\\slash', ['kept"odd', 'key}{back\\slash', "keptodd1", "backslash"]
    for key, user in [(odd, users["teacher"]), *((piece, users["alice"]) for piece in pieces)]:
        data = {SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
                HASH_SESSION_KEY: user.get_session_auth_hash()}
        Session.objects.create(session_key=key, session_data=store_class()().encode(data),
                               expire_date=timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE))
        index(key, user.pk)

    run("--keep-staff")

    assert [exists(key) for key in [odd, *pieces]] == [True, False, False, False, False]
    assert rows() == {odd}


@pytest.mark.parametrize("mixed", [False, True], ids=["all-indexed", "half-indexed"])
def test_exclude_user_through_the_index_keeps_exactly_that_user(storing_engine, users, mixed):
    tabs, anonymous = logins(mixed)

    run("--exclude-user", "carol")

    left = {name: [exists(key_of(tab)) for tab in tab_pair] for name, tab_pair in tabs.items()}
    assert left == {"alice": [False, False], "carol": [True, True], "teacher": [False, False]}
    assert not exists(anonymous)
    assert rows() <= {key_of(tab) for tab in tabs["carol"]}
    assert [is_signed_in(tab, "carol") for tab in tabs["carol"]] == [True, True]
    assert not is_signed_in(tabs["teacher"][0], "teacher")


def test_a_forged_row_keeps_nothing(storing_engine, users):
    """Rows naming the teacher: on alice's session (forged), and on a key whose session is gone
    (stale). --keep-staff deletes alice's session and both rows; only the teacher's own stays."""
    teacher, alice = login("teacher"), login("alice")
    index(key_of(teacher), users["teacher"].pk)
    index(key_of(alice), users["teacher"].pk)  # forged: the session is alice's
    stale = login("carol")
    stale_key = key_of(stale)
    index(stale_key, users["teacher"].pk)
    store_class()(stale_key).delete()  # the session went without its row (a stale row)
    reused = anonymous_visit()
    index(reused, users["teacher"].pk)  # a row whose key now holds somebody else's (anonymous) session

    run("--keep-staff")

    assert (exists(key_of(teacher)), exists(key_of(alice)), exists(reused)) == (True, False, False)
    assert rows() == {key_of(teacher)}
    assert (is_signed_in(teacher, "teacher"), is_signed_in(alice, "alice")) == (True, False)


def test_a_row_naming_another_user_does_not_keep_a_staff_session_unread(storing_engine, users):
    """A staff session whose row names a student is deleted (a row only says where to look; at worst
    a wrong row logs out early), and its row with it."""
    teacher = login("teacher")
    index(key_of(teacher), users["alice"].pk)
    run("--keep-staff")
    assert not exists(key_of(teacher)) and rows() == set()


@pytest.mark.parametrize("mixed", [False, True], ids=["all-indexed", "half-indexed"])
def test_a_zone_run_through_the_index_deletes_exactly_the_due_users(storing_engine, users, mixed):
    """One group of a per-user time zone run (students.zones.restricted: only alice is due,
    anonymous sessions kept): alice's sessions go, carol's, the teacher's and the anonymous stay."""
    tabs, anonymous = logins(mixed)
    keep = KeepRule(only_user_ids=frozenset({str(users["alice"].pk)}), keep_anonymous=True)

    counts = purge(detect_engine(), keep, before=timezone.now() + timedelta(seconds=1))

    left = {name: [exists(key_of(tab)) for tab in tab_pair] for name, tab_pair in tabs.items()}
    assert left == {"alice": [False, False], "carol": [True, True], "teacher": [True, True]}
    assert exists(anonymous)
    assert counts.deleted_active == 2
    assert not rows() & {key_of(tab) for tab in tabs["alice"]}
    assert rows() >= {key_of(tabs["carol"][0]), key_of(tabs["teacher"][0])}
    assert (is_signed_in(tabs["alice"][1], "alice"), is_signed_in(tabs["carol"][1], "carol")) == (False, True)


def test_a_zone_run_keeps_a_due_staff_session_only_by_its_own_data(storing_engine, users):
    """A zone run with --keep-staff where alice and the teacher are both due: the teacher's session
    stays; alice's, whose row was forged to name the teacher, goes with its row."""
    teacher, alice = login("teacher"), login("alice")
    index(key_of(alice), users["teacher"].pk)  # forged: the session is alice's
    due = frozenset({str(users["alice"].pk), str(users["teacher"].pk)})
    keep = KeepRule(keep_staff=True, staff_ids=frozenset({str(users["teacher"].pk)}), only_user_ids=due,
                    keep_anonymous=True)

    purge(detect_engine(), keep, before=timezone.now() + timedelta(seconds=1))

    assert (exists(key_of(teacher)), exists(key_of(alice))) == (True, False)
    assert rows() == {key_of(teacher)}
    assert (is_signed_in(teacher, "teacher"), is_signed_in(alice, "alice")) == (True, False)


def test_a_full_purge_leaves_no_row(storing_engine, users):
    tabs, anonymous = logins(mixed=False)
    run()
    assert rows() == set()
    assert not exists(anonymous) and not any(exists(key_of(tab)) for pair in tabs.values() for tab in pair)


@pytest.mark.parametrize("engine_name", ["file", "cache"])
def test_a_full_purge_keeps_exactly_the_rows_of_the_logins_made_during_it(engine_name, settings, tmp_path, request,
                                                                          users):
    """On cache and file a full purge drops the rows at the end, by login time (owners.forget_all_but):
    a login made while it runs keeps its row exactly when its session is still there."""
    use_engine(settings, tmp_path, engine_name,
               redis_url=request.getfixturevalue("redis_server") if engine_name == "cache" else None)
    before = [key_of(login(name)) for name in ("alice", "carol", "teacher", "alice", "carol")]
    during = []

    def heartbeat():  # called after each batch, while the purge runs
        if len(during) < 3:
            during.append(key_of(login("alice")))

    purge(detect_engine(), KeepRule(), batch_size=2, heartbeat=heartbeat)

    assert not any(exists(key) for key in before)
    assert len(during) == 3
    assert rows() == {key for key in during if exists(key)}
    assert rows(), "at least the last login, made after the last batch was listed, is still there"


def test_a_dry_run_changes_no_row(storing_engine, users):
    tabs, _ = logins(mixed=False)
    before = rows()
    run("--keep-staff", "--dry-run")
    assert rows() == before and len(before) == 6
    assert all(exists(key_of(tab)) for pair in tabs.values() for tab in pair)


def test_rows_whose_session_expired_by_itself_do_not_pile_up(storing_engine, users):
    """clearsessions, a Redis TTL or a file cleanup removes a session without its row. A run drops
    such rows once their login is older than SESSION_COOKIE_AGE (no session can have expired by
    itself before that); a younger row of a gone session waits for that, a live session's row stays."""
    old_login = timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE + 60)
    teacher, expired_old, expired_young = login("teacher"), login("alice"), login("carol")
    index(key_of(teacher), users["teacher"].pk, logged_in_at=old_login)  # live, kept: its row stays
    index(key_of(expired_old), users["alice"].pk, logged_in_at=old_login)
    index(key_of(expired_young), users["carol"].pk)
    store_class()(key_of(expired_old)).delete()
    store_class()(key_of(expired_young)).delete()
    assert rows() == {key_of(teacher), key_of(expired_old), key_of(expired_young)}

    run("--keep-staff")

    assert exists(key_of(teacher))
    # The young row may already be gone (db on SQLite empties the index with its table); at the
    # latest it goes with the first run after its login is SESSION_COOKIE_AGE old.
    assert rows() - {key_of(expired_young)} == {key_of(teacher)}
    owners.sweep(detect_engine(), now=timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 1))
    assert rows() == {key_of(teacher)}
