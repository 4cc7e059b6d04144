"""lcstats/env.py: the environment strings the deployment (and the Ansible role) sets."""
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from lcstats.env import cache_from_url, database_from_url, flag, session_engine
from students.tests.helpers import REPO_DIR

BASE = Path("/srv/site")


def test_sqlite_absolute_and_relative():
    assert database_from_url("sqlite:////var/db/site.sqlite3", BASE)["NAME"] == Path("/var/db/site.sqlite3")
    assert database_from_url("sqlite:///db.sqlite3", BASE)["NAME"] == BASE / "db.sqlite3"


def test_postgres_url_with_escapes_and_options():
    db = database_from_url("postgres://lc%40user:p%2Fss@db.internal:6432/lcstats?sslmode=require", BASE)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "lc@user", "p/ss", "db.internal", "6432", "lcstats")
    assert db["OPTIONS"] == {"sslmode": "require", "connect_timeout": "10"}


@pytest.mark.parametrize("url, problem", [
    ("mysql://u@h/db", "'mysql' is not supported"),
    ("postgres://u@h:5432/", r"DATABASE_URL \(postgres://h:5432/…\) names no database"),
    ("sqlite://", r"DATABASE_URL \(sqlite:///…\) names no SQLite file"),
])
def test_bad_database_urls_name_the_problem(url, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        database_from_url(url, BASE)


def test_caches():
    assert cache_from_url("locmem://", BASE)["BACKEND"].endswith("LocMemCache")
    redis = cache_from_url("redis://127.0.0.1:6379/2?key_prefix=lcstats&version=3", BASE)
    assert redis == {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                     "LOCATION": "redis://127.0.0.1:6379/2", "KEY_PREFIX": "lcstats", "VERSION": 3}
    with pytest.raises(ImproperlyConfigured, match="'memcached' is not supported"):
        cache_from_url("memcached://127.0.0.1:11211", BASE)
    with pytest.raises(ImproperlyConfigured, match="unknown parameters: timeout"):
        cache_from_url("redis://h:6379/0?timeout=3", BASE)


def test_session_engines_and_flags():
    assert session_engine("cached_db") == "django.contrib.sessions.backends.cached_db"
    assert session_engine("my.sessions.engine") == "my.sessions.engine"
    with pytest.raises(ImproperlyConfigured, match="'cookies' is neither"):
        session_engine("cookies")
    assert flag("True") and flag("1") and not flag("") and not flag("0")


def settings_in_a_fresh_process(**env):
    """Import lcstats.settings with exactly these variables (pytest-django forces DEBUG off here)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CACHE_URL"))}
    code = "import json, lcstats.settings as s; print(json.dumps([s.DEBUG, s.SECRET_KEY, s.ALLOWED_HOSTS]))"
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=REPO_DIR,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_debug_off_and_an_insecure_named_key_by_default():
    debug, key, hosts = settings_in_a_fresh_process()
    assert debug is False and key.startswith("django-insecure-") and "*" not in hosts


def test_debug_key_and_hosts_come_from_the_environment():
    assert settings_in_a_fresh_process(DJANGO_DEBUG="1", DJANGO_SECRET_KEY="s3cret",
                                       DJANGO_ALLOWED_HOSTS="a.example, b.example") == [
        True, "s3cret", ["a.example", "b.example"]]


# --- no secret in an error (issue 20): the role prints these, the job logs them, the mail sends them ---

SECRET = "Pa55-w0rd.secret"
LEAKS = ("logout_user", SECRET, "qsecret", "lcstats_db")


@pytest.mark.parametrize("variable, url, shown", [
    ("DATABASE_URL", f"postgres://logout_user:{SECRET}@db.example:5432/?sslmode=require&passfile=qsecret",
     "DATABASE_URL (postgres://db.example:5432/…) names no database"),
    # An unencoded / in the password: urllib takes what follows the user name for the port.
    ("DATABASE_URL", f"postgresql://logout_user:{SECRET}/x@db.example/lcstats_db",
     "DATABASE_URL (postgresql://…) is not a valid URL or its port is not a number"),
    ("DATABASE_URL", f"postgres://logout_user:{SECRET}@[db.example/lcstats_db", "DATABASE_URL (…) is not a valid URL"),
    # ... and where the piece of the password that takes the port's place is a number.
    ("DATABASE_URL", "postgres://logout_user:5432/Pa55-w0rd.secret@db.example/lcstats_db",
     "DATABASE_URL (postgres://…) has an @ after its host"),
    ("CACHE_URL", f"redis://logout_user:{SECRET}@cache.example:6379/0?version=qsecret",
     "CACHE_URL (redis://cache.example:6379/…) has a version that is not a whole number"),
    ("CACHE_URL", f"redis://logout_user:{SECRET}@cache.example:63x79/0",
     "CACHE_URL (redis://…) is not a valid URL or its port is not a number"),
])
def test_errors_name_the_scheme_and_host_but_no_secret(variable, url, shown):
    parse = database_from_url if variable == "DATABASE_URL" else cache_from_url
    with pytest.raises(ImproperlyConfigured) as raised:
        parse(url, BASE)
    message = str(raised.value)
    assert message.startswith(shown), message
    printed = "".join(traceback.format_exception(raised.value))  # as Python prints it, chained errors too
    assert not [leak for leak in LEAKS if leak in printed], printed


def test_manage_py_with_a_mistaken_database_url_names_it_without_its_password():
    """What the role's checks and the nightly job print: a real process, its whole output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CACHE_URL"))}
    url = f"postgres://logout_user:{SECRET}@db.example:5432/?sslmode=require"
    result = subprocess.run([sys.executable, "manage.py", "logout_all_users"], cwd=REPO_DIR,
                            env={**clean, "DATABASE_URL": url}, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    # One line, as a CommandError prints: a traceback would push the run's start out of the mail's tail.
    assert result.stderr == "ImproperlyConfigured: DATABASE_URL (postgres://db.example:5432/…) names no database\n", output
    assert SECRET not in output and "logout_user" not in output, output
