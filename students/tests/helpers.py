"""What the students tests share besides fixtures (those are in conftest.py): signing in through the
real login form and looking at what the person sees, running commands in this process, choosing a
session engine, Django's clock pinned (day D), the health URL as a monitor polls it, and the firing
simulation of the DST tests."""
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from importlib import import_module
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import redis as redis_py
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache, caches
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from students import health
from students.schedule import DAY, Schedule
from students.schedule_store import recorded_schedule

PASSWORD = "a-long-test-password-42"
ENGINES = ["db", "cached_db", "file", "signed_cookies"]

# --- Django's clock, pinned (the clock-cutoff tests; the `clock` fixture) -------------------------
# timezone.now drives logins (their login time), session expiry, the middleware and the commands.
# Day D is tomorrow by the real calendar, so file sessions (whose mtime is the real clock) are
# neither expired nor in the future.
REAL_NOW = timezone.now
D = datetime.combine(REAL_NOW().date() + timedelta(days=1), time(0), tzinfo=UTC)  # midnight UTC starting day D


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


def without_cutoff_middleware(settings):
    """Take the cutoff middleware out, so a test sees what the purge alone achieved."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "students.middleware.LogoutCutoffMiddleware"]


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

# --- the health URL (students.health), as an uptime monitor polls it -----------------------------

HEALTH_URL = "/health/nightly-logout/"
RECORDED = "2026-11-30T10:00:00+00:00"  # a Monday, winter: Europe/Dublin is on UTC


def pin_clock(monkeypatch, at):
    """Every timezone.now() reads `at` from here on (the site, the commands, the health). The
    health URL's answer is cached for a few seconds of real time; a test that jumps the clock
    drops it, as those seconds would have passed."""
    at = datetime.fromisoformat(at) if isinstance(at, str) else at
    monkeypatch.setattr(timezone, "now", lambda: at)
    cache.delete(health.CACHE_KEY)
    return at


def record_schedule(monkeypatch, time, zone, *, at=RECORDED, scheduler="cron"):
    """Record a schedule the way the role does, at the pinned moment `at`; return what the site reads."""
    pin_clock(monkeypatch, at)
    call_command("logout_schedule", "--set", time, "--timezone", zone, "--scheduler", scheduler,
                 stdout=StringIO())
    return recorded_schedule()


def poll():
    """One monitor request: a fresh client, no cookie, no login. Returns (status, body)."""
    response = Client().get(HEALTH_URL)
    assert response["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.content)


# --- scheduler firings across daylight-saving days (test_schedule, tests/test_systemd_units) -------

def simulate(firings, due_at, zone):
    """Step the pinned clock through the firings, the schedule recorded just before the first; a
    firing runs when the latest scheduled instant has passed since the recording and no earlier run
    stands for it (students.due.due_at's rule, without the database). Return the instants run at."""
    schedule = Schedule(times=(due_at,), timezone=str(zone), recorded_at=firings[0] - timedelta(seconds=1))
    runs, stood_for = [], schedule.recorded_at
    for now in firings:
        latest = schedule.latest_instant(now)
        if latest is not None and latest > stood_for:
            runs.append(now)
            stood_for = latest
    return runs


# --- a real `manage.py` process (test_command_process, test_checks) ------------------------------
# Each caller gets its own database: a SQLite file, or (when the suite runs on PostgreSQL) a fresh
# database on the same server.

REPO_DIR = Path(__file__).resolve().parents[2]
SERVER_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = urlsplit(SERVER_URL).scheme.startswith("postgres")


def manage(env, *args, stdin=None):
    """`manage.py *args` in a real process with `env`; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_DIR, env=env,
                          capture_output=True, text=True, input=stdin, timeout=120)


def checked(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


BASE_ENV = {"CACHE_URL": "locmem://", "SESSION_ENGINE": "db", "DJANGO_SETTINGS_MODULE": "lcstats.settings",
            "DJANGO_LOG_LEVEL": "WARNING"}


def postgres_admin(sql):
    """Run `sql` (CREATE/DROP DATABASE) on the suite's PostgreSQL server."""
    import psycopg  # only on PostgreSQL runs

    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql)


def database_url_for(name, folder):
    """DATABASE_URL of database `name`: on the suite's PostgreSQL server, else a SQLite file in `folder`."""
    if ON_POSTGRES:
        return urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()
    return f"sqlite:///{folder / (name + '.sqlite3')}"


# --- "keep me signed in" (test_remember, test_session_index) ------------------------------------

def offer(clock=None, *options):
    """Record a 02:00 UTC schedule with --keep-remembered (the day before D when the clock is pinned)."""
    if clock is not None:
        clock(D - DAY + timedelta(hours=12))
    status, out = command("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--keep-remembered", *options)
    assert status == 0, out


def login_remembered(username):
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD, "remember": "on"})
    assert response.status_code == 302, response.content[:300]
    assert is_signed_in(client, username)
    return client


def key_of(client):
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def in_storage(kind, key):
    """Is this session key still in the engine's storage, looked at where the engine keeps it?"""
    if kind in ("db", "cached_db"):
        return Session.objects.filter(session_key=key).exists()
    if kind == "file":
        return os.path.exists(os.path.join(settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME + key))
    cache = caches["default"]
    return bool(redis_py.Redis.from_url(cache._servers[0]).exists(
        cache.make_key("django.contrib.sessions.cache" + key)))
