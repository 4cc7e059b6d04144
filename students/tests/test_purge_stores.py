"""The file and cache engines, looked at in their storage: a full purge removes every session and
reads none, nothing unrelated in the folder or the Redis database is touched, and a scheduled run
decides by the save time the store shows (a file's mtime, a key's TTL), decoding only what may
have begun after the instant it stands for."""
import os
import shutil
import tempfile
import time
from datetime import timedelta

import pytest
import redis as redis_py
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import caches
from django.core.management.base import CommandError
from django.utils import timezone

from students.engines import detect_engine
from students.models import LogoutRun
from students.purge import purge
from students.selection import FUTURE_LOGIN_TOLERANCE_SECONDS, LOGIN_TIME_KEY, KeepRule, resolve_keep_rule
from students.tests.helpers import command, forget_file_storage_path, is_signed_in, login, use_engine

pytestmark = pytest.mark.django_db

KEY_32 = "k" * 31 + "0"


def new_session(engine_name, user=None, logged_in_at=None, saved_ago=0):
    """A session as the engine stores it; saved_ago (seconds) moves its save time back as the store
    shows it (file: mtime; cache: the TTL left); returns the session key."""
    store = detect_engine(f"django.contrib.sessions.backends.{engine_name}").store_class()
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
        store[LOGIN_TIME_KEY] = logged_in_at.timestamp()
    else:
        store["cart"] = "anonymous visitor"
    store.create()
    store.save()
    if saved_ago and engine_name == "file":
        path = os.path.join(settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME + store.session_key)
        os.utime(path, (time.time() - saved_ago,) * 2)
    elif saved_ago:
        cache = caches[settings.SESSION_CACHE_ALIAS]
        ttl_ms = int((settings.SESSION_COOKIE_AGE - saved_ago) * 1000)
        client(cache).pexpire(cache.make_key(store.cache_key_prefix + store.session_key), ttl_ms)
    return store.session_key


def client(cache):
    return cache._cache.get_client(write=True)


def session_exists(engine_name, key):
    return detect_engine(f"django.contrib.sessions.backends.{engine_name}").store_class().exists(key)


@pytest.fixture(params=["file", "cache"])
def store(request, settings, tmp_path):
    redis_url = request.getfixturevalue("redis_server") if request.param == "cache" else None
    use_engine(settings, tmp_path, request.param, redis_url=redis_url)
    return request.param


def test_a_scheduled_run_decides_by_the_save_time_the_store_shows(store, users):
    now = timezone.now()
    before = now - timedelta(hours=1)
    alice, carol = users["alice"], users["carol"]
    gone = [
        new_session(store, alice, logged_in_at=now - timedelta(hours=2), saved_ago=7200),
        new_session(store, None, saved_ago=7200),
        # Saved since, but logged in before the instant: read, decoded, deleted.
        new_session(store, alice, logged_in_at=now - timedelta(hours=3)),
        # Claims a login after the instant, but the store shows a save before it: not even read.
        new_session(store, carol, logged_in_at=now, saved_ago=7200),
    ]
    spared = [new_session(store, carol, logged_in_at=now - timedelta(minutes=30)), new_session(store, None)]
    counts = purge(detect_engine(), KeepRule(), before=before)
    assert [session_exists(store, key) for key in gone] == [False] * 4
    assert [session_exists(store, key) for key in spared] == [True] * 2
    assert (counts.deleted_active, counts.spared) == (4, 2)


def test_a_scheduled_run_with_a_keep_rule_keeps_and_spares(store, users):
    now = timezone.now()
    kept = new_session(store, users["teacher"], logged_in_at=now - timedelta(hours=2), saved_ago=7200)
    spared = new_session(store, users["alice"], logged_in_at=now - timedelta(minutes=5))
    gone = new_session(store, users["alice"], logged_in_at=now - timedelta(hours=2), saved_ago=7200)
    counts = purge(detect_engine(), resolve_keep_rule(keep_staff=True), before=now - timedelta(hours=1))
    assert (session_exists(store, kept), session_exists(store, spared), session_exists(store, gone)) == \
        (True, True, False)
    assert (counts.kept, counts.spared, counts.deleted_active) == (1, 1, 1)


def test_a_full_purge_removes_every_session_and_decodes_none(store, users):
    keys = [new_session(store, users["alice"], logged_in_at=timezone.now()) for _ in range(5)]
    keys.append(new_session(store, None))
    counts = purge(detect_engine(), KeepRule(), batch_size=2)
    assert not any(session_exists(store, key) for key in keys)
    assert (counts.deleted_active, counts.deleted_expired, counts.decoded) == (6, 0, False)
    assert counts.authenticated == counts.anonymous == counts.undecodable == 0


def test_the_cache_purge_reads_no_value(settings, tmp_path, redis_server, users):
    use_engine(settings, tmp_path, "cache", redis_url=redis_server)
    keys = [new_session("cache", users["alice"], logged_in_at=timezone.now()) for _ in range(3)]
    server = redis_py.Redis.from_url(redis_server)
    server.config_resetstat()
    purge(detect_engine(), KeepRule())
    used = {name.removeprefix("cmdstat_") for name in server.info("commandstats")}
    assert not any(session_exists("cache", key) for key in keys)
    assert {"scan", "unlink"} <= used and not used & {"get", "mget", "pttl", "ttl", "dump"}, used


def test_a_garbage_file_is_deleted_unread(settings, tmp_path, users):
    use_engine(settings, tmp_path, "file")
    (tmp_path / "sessions" / f"{settings.SESSION_COOKIE_NAME}{KEY_32}").write_bytes(b"\xff not a session")
    counts = purge(detect_engine(), KeepRule())
    assert os.listdir(tmp_path / "sessions") == []
    assert (counts.deleted_active, counts.undecodable) == (1, 0)


def test_expired_files_are_counted_by_their_modification_time(settings, tmp_path, users):
    use_engine(settings, tmp_path, "file")
    new_session("file", users["alice"], logged_in_at=timezone.now(), saved_ago=settings.SESSION_COOKIE_AGE + 1)
    # A custom set_expiry is not what the store shows: counted by the same rule (module docstring).
    store = detect_engine().store_class()
    store["cart"] = "short-lived"
    store.set_expiry(-60)
    store.create()
    store.save()
    dry = purge(detect_engine(), KeepRule(), dry_run=True)
    counts = purge(detect_engine(), KeepRule())
    assert (dry.expired, dry.anonymous) == (1, 1)
    assert (counts.deleted_expired, counts.deleted_active) == (1, 1)
    assert os.listdir(tmp_path / "sessions") == []


def test_unrelated_files_in_the_session_folder_survive(settings, tmp_path, users):
    use_engine(settings, tmp_path, "file")
    folder = tmp_path / "sessions"
    prefix = settings.SESSION_COOKIE_NAME
    unrelated = {
        "notes.txt": "a file of someone else's",
        f"{prefix}{KEY_32}_out_abc123": "Django's temp file of a session being saved",
        f"{prefix}{KEY_32.upper()}": "not a key Django makes",
        f"{prefix}short": "too short for a session key",
        f"other{KEY_32}": "another prefix",
    }
    for name, text in unrelated.items():
        (folder / name).write_text(text)
    (folder / f"{prefix}{'d' * 32}").mkdir()  # a folder named like a session
    (folder / f"{prefix}{'d' * 32}" / "inside").write_text("x")
    os.symlink(folder / "notes.txt", folder / f"{prefix}{'s' * 32}")
    sessions = [new_session("file", users["alice"], logged_in_at=timezone.now()) for _ in range(2)]
    for run in ({"dry_run": True}, {"before": timezone.now() - timedelta(hours=1)}, {}):
        purge(detect_engine(), resolve_keep_rule(keep_staff=True) if run else KeepRule(), **run)
    assert not any(session_exists("file", key) for key in sessions)
    assert sorted(os.listdir(folder)) == sorted([*unrelated, f"{prefix}{'d' * 32}", f"{prefix}{'s' * 32}"])
    assert all((folder / name).read_text() == text for name, text in unrelated.items())
    assert (folder / f"{prefix}{'d' * 32}" / "inside").exists()


@pytest.mark.parametrize("keep_staff", [False, True])
def test_cached_db_leaves_no_cache_entry_of_a_deleted_row_across_batches(settings, tmp_path, redis_server, users,
                                                                        keep_staff):
    from django.contrib.sessions.models import Session

    use_engine(settings, tmp_path, "cached_db", redis_url=redis_server)
    now = timezone.now()
    doomed = [new_session("cached_db", users["alice"], logged_in_at=now) for _ in range(30)]
    doomed += [new_session("cached_db", None) for _ in range(5)]
    teacher = new_session("cached_db", users["teacher"], logged_in_at=now)
    counts = purge(detect_engine(), resolve_keep_rule(keep_staff=keep_staff), batch_size=5)
    cache = caches[settings.SESSION_CACHE_ALIAS]
    head = cache.make_key("django.contrib.sessions.cached_db").encode()
    in_redis = {raw[len(head):].decode() for raw in client(cache).scan_iter(match=head + b"*")}
    left = {teacher} if keep_staff else set()
    assert in_redis == left and set(Session.objects.values_list("session_key", flat=True)) == left
    assert counts.deleted_active == len(doomed) + (0 if keep_staff else 1)


def test_a_value_the_cache_cannot_load_is_an_undecodable_session(settings, tmp_path, redis_server, users):
    use_engine(settings, tmp_path, "cache", redis_url=redis_server)
    cache = caches[settings.SESSION_CACHE_ALIAS]
    client(cache).set(cache.make_key(f"django.contrib.sessions.cache{KEY_32}"), b"\x80 not a pickle")
    kept = new_session("cache", users["teacher"], logged_in_at=timezone.now())
    counts = purge(detect_engine(), resolve_keep_rule(keep_staff=True))
    assert (counts.undecodable, counts.kept, counts.deleted_active) == (1, 1, 1)
    assert not session_exists("cache", KEY_32) and session_exists("cache", kept)


def test_the_lock_hears_from_the_purge_every_batch(store, users):
    for _ in range(7):
        new_session(store, users["alice"], logged_in_at=timezone.now())
    beats = []
    counts = purge(detect_engine(), KeepRule(), batch_size=2, heartbeat=lambda: beats.append(1))
    assert counts.deleted_active == 7 and len(beats) >= 4


# --- session files another user owns (issue 20) ----------------------------------------------------

NOBODY = 65534  # nobody/nogroup on Debian


def session_path(key):
    return os.path.join(settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME + key)


@pytest.fixture
def shared_folder(settings):
    """The file engine's folder as /tmp is (mode 1777), where another user's files sit among the
    sessions; outside pytest's own tmp folder, which only root may enter."""
    if os.geteuid() != 0:
        pytest.fail("the test makes files another user owns: run the tests as root (as CI does)")
    folder = tempfile.mkdtemp(prefix="sessions-")
    os.chmod(folder, 0o1777)
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.file"
    settings.SESSION_FILE_PATH = folder
    forget_file_storage_path()
    yield folder
    shutil.rmtree(folder)


def test_files_another_user_owns_are_skipped_counted_and_reported_and_the_run_exits_1(shared_folder, users):
    alice = login("alice")
    foreign = new_session("file", users["carol"], logged_in_at=timezone.now())
    os.chown(session_path(foreign), NOBODY, NOBODY)  # written by another user (another site in /tmp)
    status, out = command("logout_all_users", "--dry-run")
    assert status == 0 and f"Would skip 1 session file(s) in {shared_folder} that another user owns" in out, out
    assert os.path.exists(session_path(foreign)) and is_signed_in(alice, "alice")

    with pytest.raises(CommandError, match=rf"^Skipped 1 session file\(s\) in {shared_folder} that another user "
                                           r"owns: not deleted\. The logout cutoff ends"):
        command("logout_all_users")

    assert os.path.exists(session_path(foreign)), "another user's file was deleted"
    assert os.stat(session_path(foreign)).st_uid == NOBODY
    assert not os.path.exists(session_path(alice.cookies[settings.SESSION_COOKIE_NAME].value))
    run = LogoutRun.objects.get()
    assert (run.outcome, run.deleted_active) == (LogoutRun.Outcome.SUCCESS, 1)  # the cutoff is set
    assert not is_signed_in(alice, "alice")


def test_the_purge_run_as_the_site_user_skips_files_it_cannot_delete_instead_of_failing_part_way(shared_folder,
                                                                                                 users):
    now = timezone.now()
    theirs = [new_session("file", users["carol"], logged_in_at=now) for _ in range(2)]  # root's, in a 1777 folder
    ours = [new_session("file", users["alice"], logged_in_at=now) for _ in range(3)]
    for key in ours:
        os.chown(session_path(key), NOBODY, NOBODY)
    os.seteuid(NOBODY)  # the job runs as the site user; the file purge touches no database
    try:
        counts = purge(detect_engine(), KeepRule())
    finally:
        os.seteuid(0)
    assert (counts.deleted_active, counts.not_owned) == (3, 2)
    assert [os.path.exists(session_path(key)) for key in theirs + ours] == [True, True, False, False, False]


# --- a web host whose clock runs fast (issue 20) ---------------------------------------------------

@pytest.mark.parametrize("kind", ["db", "file", "cache"])
def test_a_scheduled_run_deletes_a_login_stamped_in_the_future(kind, settings, tmp_path, users, request):
    redis_url = request.getfixturevalue("redis_server") if kind == "cache" else None
    use_engine(settings, tmp_path, kind, redis_url=redis_url)
    now = timezone.now()
    tolerance = timedelta(seconds=FUTURE_LOGIN_TOLERANCE_SECONDS)
    # Stamped by a web host an hour fast: "after" the run's instant, but in this host's future.
    fast = new_session(kind, users["alice"], logged_in_at=now + timedelta(hours=1))
    # A clock a little fast, within the tolerance: a login after the instant, spared as any such.
    skewed = new_session(kind, users["carol"], logged_in_at=now + tolerance - timedelta(minutes=1))
    counts = purge(detect_engine(), KeepRule(), before=now - timedelta(hours=1))
    assert (session_exists(kind, fast), session_exists(kind, skewed)) == (False, True)
    assert (counts.deleted_active, counts.spared) == (1, 1)
