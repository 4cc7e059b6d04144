"""Shared helpers for the students tests: users, logging in through the real login form,
choosing a session engine (and a real Redis cache) per test."""
from datetime import UTC, datetime, time, timedelta
from importlib import import_module
from io import StringIO

import pytest
import redis as redis_py
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

PASSWORD = "a-long-test-password-42"
ENGINES = ["db", "cached_db", "file", "signed_cookies"]


@pytest.fixture(autouse=True)
def _fresh_default_cache():
    # locmem outlives a test; a cutoff cached by one test must not leak into the next.
    cache.clear()


@pytest.fixture
def users(db):
    User = get_user_model()
    return {
        "alice": User.objects.create_user("alice", password=PASSWORD),
        "carol": User.objects.create_user("carol", password=PASSWORD),
        "teacher": User.objects.create_user("teacher", password=PASSWORD, is_staff=True),
    }


def run_command(*args):
    """logout_all_users in this process; returns what it printed."""
    out = StringIO()
    call_command("logout_all_users", *args, stdout=out)
    return out.getvalue()


def login(username):
    """A browser tab: a fresh client that signs in through the login form."""
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, f"login of {username} failed: {response.content[:300]!r}"
    assert is_signed_in(client, username)
    return client


def is_signed_in(client, username):
    """What the person sees: the statistics page with their name, or a redirect to the login page."""
    response = client.get("/")
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/login/"), response["Location"]
        return False
    assert response.status_code == 200
    assert f"Signed in as <span id=\"username\">{username}</span>" in response.content.decode()
    return True


def forget_file_storage_path():
    """Django's file SessionStore caches SESSION_FILE_PATH on its class; tests change the setting."""
    from django.contrib.sessions.backends.file import SessionStore

    if "_storage_path" in SessionStore.__dict__:
        del SessionStore._storage_path


def use_engine(settings, tmp_path, name, redis_url=None):
    """Configure SESSION_ENGINE (and for cache/cached_db on Redis, CACHES) for this test."""
    settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{name}"
    if name == "file":
        settings.SESSION_FILE_PATH = str(tmp_path / "sessions")
        (tmp_path / "sessions").mkdir()
        forget_file_storage_path()
    if redis_url:
        redis_py.Redis.from_url(redis_url).flushdb()
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": redis_url, "KEY_PREFIX": "lcstats"}}


def use_engine_param(request, settings, tmp_path):
    """For a fixture parametrized with engine names, "cache-on-redis" among them (a real Redis)."""
    if request.param == "cache-on-redis":
        use_engine(settings, tmp_path, "cache", redis_url=request.getfixturevalue("redis_server"))
    else:
        use_engine(settings, tmp_path, request.param)
    return request.param


@pytest.fixture(params=ENGINES)
def engine(request, settings, tmp_path):
    use_engine(settings, tmp_path, request.param)
    return request.param


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The real hasher is slow by design; these tests log in dozens of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def without_cutoff_middleware(settings):
    """Take the cutoff middleware out, so a test sees what the purge alone achieved."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "students.middleware.LogoutCutoffMiddleware"]


# --- Django's clock, pinned (the clock-cutoff tests) ---------------------------------------------
# timezone.now drives logins (their login time), session expiry, the middleware and the commands.
# Day D is tomorrow by the real calendar, so file sessions (whose mtime is the real clock) are
# neither expired nor in the future.
REAL_NOW = timezone.now
D = datetime.combine(REAL_NOW().date() + timedelta(days=1), time(0), tzinfo=UTC)  # midnight UTC starting day D


@pytest.fixture
def clock(monkeypatch):
    """clock(instant) pins Django's clock from then on."""
    pinned = {}
    monkeypatch.setattr("django.utils.timezone.now", lambda: pinned.get("now") or REAL_NOW())

    def set_to(instant):
        pinned["now"] = instant
    return set_to


def command(name, *args):
    """A management command in this process: (exit status, stdout); exit 3 and the like included."""
    out = StringIO()
    try:
        call_command(name, *args, stdout=out)
    except SystemExit as exited:
        return exited.code, out.getvalue()
    return 0, out.getvalue()


def stored(client):
    """Is the browser's session still in the engine's storage (looked at directly)?"""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    return store.exists(client.cookies[settings.SESSION_COOKIE_NAME].value)
