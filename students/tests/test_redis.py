"""cached_db and cache session engines on a real Redis server (started by tests/support/servers.py)."""

import pytest
import redis as redis_py
from django.core.management import CommandError

from students.tests.helpers import run_command as run, is_signed_in, login, use_engine, without_cutoff_middleware

pytestmark = pytest.mark.django_db


def session_keys_in_redis(url, engine):
    return sorted(redis_py.Redis.from_url(url).scan_iter(match=f"lcstats:1:django.contrib.sessions.{engine}*"))


@pytest.fixture(params=["cached_db", "cache"])
def redis_engine(request, settings, tmp_path, redis_server):
    use_engine(settings, tmp_path, request.param, redis_url=redis_server)
    without_cutoff_middleware(settings)  # what these tests check is the purge itself
    return request.param


def test_session_cache_keys_are_gone_and_users_logged_out(redis_engine, redis_server, users):
    alice, carol = login("alice"), login("carol")
    assert len(session_keys_in_redis(redis_server, redis_engine)) == 2
    output = run()
    assert "Successfully logged out all users by deleting 2 session(s)" in output
    assert session_keys_in_redis(redis_server, redis_engine) == []
    assert not is_signed_in(alice, "alice") and not is_signed_in(carol, "carol")


def test_excluded_users_key_stays(redis_engine, redis_server, users):
    alice, carol = login("alice"), login("carol")
    run("--exclude-user", "alice")
    assert len(session_keys_in_redis(redis_server, redis_engine)) == 1
    assert is_signed_in(alice, "alice") and not is_signed_in(carol, "carol")


def test_dry_run_leaves_the_keys(redis_engine, redis_server, users):
    login("alice")
    output = run("--dry-run")
    assert "Live sessions: 1 (1 authenticated, 0 anonymous)" in output
    assert len(session_keys_in_redis(redis_server, redis_engine)) == 1


def test_other_cache_entries_survive(redis_engine, redis_server, users):
    from django.core.cache import cache

    cache.set("django.contrib.sessions.not-a-session-but-close", "x")  # no engine prefix match
    cache.set("statistics:alice", "42")
    login("alice")
    run()
    assert cache.get("statistics:alice") == "42"


def test_cache_engine_on_a_cache_that_cannot_list_keys_is_refused(settings, tmp_path, users):
    use_engine(settings, tmp_path, "cache")  # the default locmem cache
    alice = login("alice")
    with pytest.raises(CommandError) as error:
        run()
    message = str(error.value)
    assert "'django.contrib.sessions.backends.cache'" in message
    assert "django.core.cache.backends.locmem.LocMemCache" in message
    assert is_signed_in(alice, "alice"), "a refused run must change nothing"
    from students.models import LogoutRun
    assert not LogoutRun.objects.exists()


def test_unrelated_keys_in_the_same_database_survive(redis_engine, redis_server, users):
    server = redis_py.Redis.from_url(redis_server)
    key = "u" * 32
    unrelated = [
        "unrelated-key",                                              # not Django's
        f"otherprefix:1:django.contrib.sessions.cache{key}",          # another site's sessions
        f"otherprefix:1:django.contrib.sessions.cached_db{key}",
        f"lcstats:2:django.contrib.sessions.cache{key}",              # another cache VERSION
        f"lcstats:2:django.contrib.sessions.cached_db{key}",
        f"lcstats:1:django.contrib.sessions.cache{key}x",             # not a session key's length
        f"lcstats:1:django.contrib.sessions.cache{key[:31]}",
    ]
    if redis_engine == "cache":
        unrelated.append(f"lcstats:1:django.contrib.sessions.cached_db{key}")  # the other engine's
    for name in unrelated:
        server.set(name, b"planted")
    alice, teacher = login("alice"), login("teacher")
    run("--keep-staff")
    run("--dry-run")
    run()
    assert set(session_keys_in_redis(redis_server, redis_engine)) <= {name.encode() for name in unrelated}
    assert not is_signed_in(alice, "alice") and not is_signed_in(teacher, "teacher")
    assert [server.get(name) for name in unrelated] == [b"planted"] * len(unrelated)
