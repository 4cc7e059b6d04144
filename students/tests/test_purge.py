"""The purge logic directly: expired sessions, anonymous and undecodable ones, batching."""
import os
import time
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from students.engines import detect_engine
from students.purge import purge
from students.selection import KeepRule, resolve_keep_rule
from students.tests.helpers import forget_file_storage_path

pytestmark = pytest.mark.django_db


def make_sessions(store_class, user=None, count=1, expired=False):
    keys = []
    for _ in range(count):
        store = store_class()
        if user is not None:
            store[SESSION_KEY] = str(user.pk)
        else:
            store["cart"] = "anonymous visitor"
        store.set_expiry(-60 if expired else 3600)
        store.create()
        store.save()
        keys.append(store.session_key)
    return keys


def test_counts_expired_apart_and_deletes_everything(users):
    make_sessions(SessionStore, users["alice"], count=3)
    make_sessions(SessionStore, None, count=2)
    make_sessions(SessionStore, users["carol"], count=4, expired=True)
    counts = purge(detect_engine("django.contrib.sessions.backends.db"), KeepRule(), batch_size=3)
    assert (counts.deleted_active, counts.deleted_expired) == (5, 4)
    assert Session.objects.count() == 0


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_kept_sessions_survive_across_batches(users, batch_size):
    kept = make_sessions(SessionStore, users["teacher"], count=3)
    make_sessions(SessionStore, users["alice"], count=4)
    make_sessions(SessionStore, None, count=2)
    make_sessions(SessionStore, users["teacher"], count=1, expired=True)
    counts = purge(detect_engine("django.contrib.sessions.backends.db"),
                   resolve_keep_rule(keep_staff=True), batch_size=batch_size)
    assert sorted(Session.objects.values_list("session_key", flat=True)) == sorted(kept)
    assert (counts.deleted_active, counts.deleted_expired, counts.kept) == (6, 1, 3)


def test_undecodable_sessions_are_not_kept(users):
    make_sessions(SessionStore, users["alice"])
    Session.objects.create(session_key="x" * 32, session_data="not-signed-by-us",
                           expire_date=timezone.now() + timedelta(hours=1))
    engine = detect_engine("django.contrib.sessions.backends.db")
    rule = resolve_keep_rule(["alice"])
    dry = purge(engine, rule, dry_run=True)
    assert (dry.authenticated, dry.undecodable, dry.kept) == (1, 1, 1)
    assert Session.objects.count() == 2, "dry run deleted something"
    purge(engine, rule)
    assert not Session.objects.filter(session_key="x" * 32).exists()
    assert Session.objects.count() == 1


def test_full_purge_is_a_few_large_deletes_not_one_per_row(users):
    make_sessions(SessionStore, users["alice"], count=50)
    with CaptureQueriesContext(connection) as queries:
        purge(detect_engine("django.contrib.sessions.backends.db"), KeepRule(), batch_size=20)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    # SQLite: one unqualified DELETE (pages freed whole); PostgreSQL: one per block range of about
    # 20 rows (50 rows: ~3 ranges) plus the open-ended tail.
    if connection.vendor == "sqlite":
        assert len(deletes) == 1, deletes
    else:
        assert 2 <= len(deletes) <= 5 and all("ctid" in sql for sql in deletes), deletes
    assert Session.objects.count() == 0


def test_keep_path_reads_pages_not_the_whole_table(users):
    make_sessions(SessionStore, users["alice"], count=25)
    make_sessions(SessionStore, users["teacher"], count=2)
    with CaptureQueriesContext(connection) as queries:
        purge(detect_engine("django.contrib.sessions.backends.db"), resolve_keep_rule(keep_staff=True), batch_size=10)
    # The queries that fetch session data, whole or its head (a count's filters only mention it).
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT ")
               and '"session_data"' in q["sql"].split(" FROM ")[0] and "count(" not in q["sql"]]
    # Pages of heads: rowid-ordered pages of 10 (the last one empty) on SQLite, block ranges of
    # about 10 rows on PostgreSQL. Whole data is read only by key, for the sessions of kept users.
    page_mark, head = ("LIMIT 10", 'substr("session_data", 1, 89)') if connection.vendor == "sqlite" \
        else ("ctid >=", 'left("session_data", 89)')
    pages = [sql for sql in selects if page_mark in sql]
    whole = [sql for sql in selects if sql not in pages]
    assert len(pages) >= 3 and all(head in sql for sql in pages), selects
    assert whole and all('"session_key" IN (' in sql for sql in whole), selects


def test_file_engine_deletes_only_session_files(users, settings, tmp_path):
    from django.contrib.sessions.backends.file import SessionStore as FileStore

    settings.SESSION_FILE_PATH = str(tmp_path)
    forget_file_storage_path()
    make_sessions(FileStore, users["alice"], count=2)
    make_sessions(FileStore, None, count=1)
    # Expired as the store shows it without reading the file: last saved a cookie age ago.
    last_saved = time.time() - settings.SESSION_COOKIE_AGE - 60
    for key in make_sessions(FileStore, users["carol"], count=1):
        os.utime(tmp_path / f"{settings.SESSION_COOKIE_NAME}{key}", (last_saved, last_saved))
    (tmp_path / "sessionid-notes.txt").write_text("not a session")
    (tmp_path / "other-file").write_text("keep me")
    counts = purge(detect_engine("django.contrib.sessions.backends.file"), KeepRule())
    assert (counts.deleted_active, counts.deleted_expired) == (3, 1)
    assert sorted(os.listdir(tmp_path)) == ["other-file", "sessionid-notes.txt"]


def test_file_engine_with_a_missing_folder_is_an_error_naming_it(settings, tmp_path, users):
    from django.core.management import CommandError, call_command

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.file"
    settings.SESSION_FILE_PATH = str(tmp_path / "missing")
    with pytest.raises(CommandError, match="missing"):
        call_command("logout_all_users")


def test_a_forged_session_claiming_a_kept_user_is_deleted(users):
    real = make_sessions(SessionStore, users["alice"])[0]
    genuine_data = Session.objects.get(session_key=real).session_data
    payload, timestamp, _signature = genuine_data.rsplit(":", 2)
    Session.objects.create(session_key="f" * 32, session_data=f"{payload}:{timestamp}:{'A' * 43}",
                           expire_date=timezone.now() + timedelta(hours=1))
    counts = purge(detect_engine("django.contrib.sessions.backends.db"), resolve_keep_rule(["alice"]))
    assert list(Session.objects.values_list("session_key", flat=True)) == [real]
    assert counts.kept == 1 and counts.deleted_active == 1


def _signed(store_class, session_dict):
    """Stored data exactly as the engine's SessionStore would write it."""
    return store_class().encode(session_dict)


def test_peek_reads_the_user_without_parsing_and_falls_back_for_anything_odd(users):
    from students.selection import Decoder

    decoder = Decoder(SessionStore)
    peek = decoder.peek
    assert peek(_signed(SessionStore, {SESSION_KEY: "42", "x": "y" * 500})) == {SESSION_KEY: "42"}  # compressed
    assert peek(_signed(SessionStore, {SESSION_KEY: "7"}))[SESSION_KEY] == "7"
    assert peek(_signed(SessionStore, {"cart": "anonymous"})) == {"cart": "anonymous"}
    # A value that merely mentions the key is escaped in JSON, so it is no match.
    assert peek(_signed(SessionStore, {"note": '"_auth_user_id":"9"'})) == {"note": '"_auth_user_id":"9"'}
    # Two markers (one nested): parsed properly, the top-level user wins.
    both = {"other": {SESSION_KEY: "9"}, SESSION_KEY: "42"}
    assert peek(_signed(SessionStore, both)) == both
    assert peek(_signed(SessionStore, {SESSION_KEY: 'a"b'}))[SESSION_KEY] == 'a"b'  # escaped quote in the id
    assert peek("garbage") is None


@pytest.mark.parametrize("nested_owner", ["teacher", "alice"])
def test_a_user_id_in_a_nested_dict_never_decides_who_is_kept(users, nested_owner):
    # The top level is anonymous; a nested dict claims a user. Kept or not, the session must go.
    data = _signed(SessionStore, {"impersonated": {SESSION_KEY: str(users[nested_owner].pk)}})
    Session.objects.create(session_key="n" * 32, session_data=data, expire_date=timezone.now() + timedelta(hours=1))
    kept = make_sessions(SessionStore, users["teacher"], count=1)
    counts = purge(detect_engine("django.contrib.sessions.backends.db"), resolve_keep_rule(keep_staff=True))
    assert list(Session.objects.values_list("session_key", flat=True)) == kept
    assert counts.kept == 1


def test_a_forged_unparsable_payload_naming_a_kept_user_is_deleted(users):
    from django.core import signing

    teacher = str(users["teacher"].pk)
    payload = signing.b64_encode(b'{"_auth_user_id":"' + teacher.encode() + b'",broken').decode()
    Session.objects.create(session_key="g" * 32, session_data=f"{payload}:1abcde:{'A' * 43}",
                           expire_date=timezone.now() + timedelta(hours=1))
    kept = make_sessions(SessionStore, users["teacher"], count=1)
    counts = purge(detect_engine("django.contrib.sessions.backends.db"), resolve_keep_rule(keep_staff=True))
    assert list(Session.objects.values_list("session_key", flat=True)) == kept
    assert counts.kept == 1


# Each shape puts the user id at another place (byte alignment) of the payload, or compresses it.
# The database rules sessions out by base64 patterns (PayloadPatterns); none may cost a kept session.
SESSION_SHAPES = {
    "user id first (as login() writes it)": lambda uid: {SESSION_KEY: uid, "_auth_user_hash": "h" * 64},
    "after one key": lambda uid: {"a": 1, SESSION_KEY: uid},
    "after two keys": lambda uid: {"ab": 1, SESSION_KEY: uid},
    "after three keys": lambda uid: {"abc": 1, SESSION_KEY: uid},
    "compressed": lambda uid: {SESSION_KEY: uid, "cart": "x" * 600},
    "compressed, id last": lambda uid: {"cart": "x" * 600, SESSION_KEY: uid},
}


@pytest.mark.parametrize("shape", SESSION_SHAPES)
def test_kept_sessions_survive_in_every_payload_shape(users, shape):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    # Ids that begin alike, so a pattern cut short could confuse them.
    staff = User.objects.create_user("staff9", pk=9009, is_staff=True)
    student = User.objects.create_user("student90", pk=90091)
    make = SESSION_SHAPES[shape]
    kept = []
    for owner, keep in [(staff, True), (student, False), (users["alice"], False), (users["teacher"], True)]:
        key = f"{owner.username:x<32}"[:32].lower().replace("_", "x")
        Session.objects.create(session_key=key, session_data=_signed(SessionStore, make(str(owner.pk))),
                               expire_date=timezone.now() + timedelta(hours=1))
        kept += [key] if keep else []
    make_sessions(SessionStore, None, count=2)
    counts = purge(detect_engine("django.contrib.sessions.backends.db"), resolve_keep_rule(keep_staff=True),
                   batch_size=2)
    assert sorted(Session.objects.values_list("session_key", flat=True)) == sorted(kept)
    assert (counts.kept, counts.authenticated, counts.anonymous, counts.deleted_active) == (2, 4, 2, 4)


def test_without_a_worker_process_the_heads_are_sorted_here(users, monkeypatch, caplog):
    import students.purge.common

    def no_semaphores(**kwargs):  # what multiprocessing raises where /dev/shm is missing
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(students.purge.common, "ProcessPoolExecutor", no_semaphores)
    kept = make_sessions(SessionStore, users["teacher"], count=2)
    make_sessions(SessionStore, users["alice"], count=3)
    counts = purge(detect_engine("django.contrib.sessions.backends.db"), resolve_keep_rule(keep_staff=True),
                   batch_size=2)
    assert sorted(Session.objects.values_list("session_key", flat=True)) == sorted(kept)
    assert (counts.kept, counts.deleted_active) == (2, 3)
    assert "no worker process available" in caplog.text
