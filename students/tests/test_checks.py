"""`manage.py check`: the cutoff middleware (errors), session storage the purge cannot clean
(warning), and the overdue logout (warning, only with `--database`)."""
import os
import secrets
import tempfile
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import SystemCheckError

from students import health
from students.middleware import LogoutCutoffMiddleware
from students.models import LogoutRun
from students.tests.helpers import use_engine
from students.tests.helpers import BASE_ENV, ON_POSTGRES, checked, database_url_for, manage, postgres_admin
from students.tests.helpers import pin_clock, record_schedule

CUTOFF = "students.middleware.LogoutCutoffMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def check(*args):
    """`manage.py check` as a person runs it: what it printed (warnings go to stderr)."""
    out, err = StringIO(), StringIO()
    call_command("check", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_the_project_as_configured_passes():
    assert "System check identified no issues" in check()


def test_missing_cutoff_middleware_is_an_error(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != CUTOFF]
    with pytest.raises(SystemCheckError, match=r"students\.E001.*LogoutCutoffMiddleware is not in MIDDLEWARE"):
        check()


def test_cutoff_middleware_before_authentication_is_an_error(settings):
    rest = [m for m in settings.MIDDLEWARE if m != CUTOFF]
    settings.MIDDLEWARE = rest[:rest.index(AUTH)] + [CUTOFF] + rest[rest.index(AUTH):]
    with pytest.raises(SystemCheckError, match=r"students\.E002.*AuthenticationMiddleware comes after it"):
        check()


class OwnCutoffMiddleware(LogoutCutoffMiddleware):
    """A site's own variant, as settings may name it."""


def test_a_subclass_of_the_cutoff_middleware_counts(settings):
    settings.MIDDLEWARE = [m if m != CUTOFF else "students.tests.test_checks.OwnCutoffMiddleware"
                           for m in settings.MIDDLEWARE]
    assert "students.E00" not in check()


def test_cache_engine_on_a_cache_that_cannot_list_keys_warns(settings, tmp_path):
    use_engine(settings, tmp_path, "cache")  # on the default locmem cache
    output = check()
    assert "students.W001" in output and "cannot list its keys" in output
    assert "The logout cutoff still ends these sessions" in output


def test_cache_engine_on_redis_does_not_warn(settings, tmp_path, redis_server):
    use_engine(settings, tmp_path, "cache", redis_url=redis_server)
    assert "students.W001" not in check()


@pytest.mark.parametrize("name", ["db", "cached_db", "file", "signed_cookies"])
def test_other_engines_do_not_warn(settings, tmp_path, name):
    use_engine(settings, tmp_path, name)
    assert "students.W001" not in check()


# --- overdue (database tag) ---------------------------------------------------------------------

@pytest.mark.django_db
def test_overdue_warns_only_with_database(monkeypatch):
    recorded = record_schedule(monkeypatch, "02:00", "Europe/Dublin", at="2026-11-30T10:00:00+00:00")
    due = recorded.recorded_at + recorded.period() + health.GRACE
    pin_clock(monkeypatch, due - timedelta(seconds=1))
    assert "students.W002" not in check("--database", "default")
    pin_clock(monkeypatch, due)
    output = check("--database", "default")
    assert "students.W002" in output
    assert (f"(students.W002) The nightly logout (scheduler cron) is overdue since {due:%Y-%m-%d %H:%M} UTC: "
            "a successful run is missing (none since the schedule was recorded).") in output
    assert "students.W002" not in check()  # plain `check` never queries the database


@pytest.mark.django_db
def test_a_success_clears_the_warning(monkeypatch):
    recorded = record_schedule(monkeypatch, "02:00", "Europe/Dublin", at="2026-11-30T10:00:00+00:00")
    late = recorded.recorded_at + timedelta(days=3)
    LogoutRun.objects.create(started_at=late - timedelta(hours=1), finished_at=late, host="web1",
                             engine="django.contrib.sessions.backends.db", outcome="success")
    pin_clock(monkeypatch, late)
    assert "students.W002" not in check("--database", "default")


@pytest.mark.django_db
def test_the_nightly_command_runs_no_checks(monkeypatch, settings, capsys):
    """Not the overdue one (it would query), and not the settings ones: the nightly run prints only
    its contract lines and still purges with E001 present. Run as manage.py runs it (call_command
    would skip the checks anyway), short of closing the test's database connection."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != CUTOFF]
    calls = []
    healthy = health.Health(health.OK, "cron", None, None, None)
    monkeypatch.setattr(health, "logout_health", lambda *a, **k: calls.append(1) or healthy)
    command = load_command_class("students", "logout_all_users")
    command.execute(**vars(command.create_parser("manage.py", "logout_all_users").parse_args([])))
    printed = capsys.readouterr()
    assert calls == [] and "Successfully logged out" in printed.out
    assert "System check" not in printed.err and "students.E001" not in printed.err
    with pytest.raises(SystemCheckError, match="students.E001"):
        check("--database", "default")
    assert calls == [1]  # the same probe does see the check when --database asks for it


def test_migrate_on_an_empty_database_is_not_broken_by_the_overdue_check(tmp_path):
    """`migrate` runs the database checks before it makes the tables. Real processes on an empty
    database: a SQLite file, or a new PostgreSQL database when the suite runs there."""
    name = f"fresh_{secrets.token_hex(4)}"
    if ON_POSTGRES:
        postgres_admin(f"CREATE DATABASE {name}")
    try:
        env = {**os.environ, **BASE_ENV, "DATABASE_URL": database_url_for(name, tmp_path)}
        half = checked(manage(env, "migrate", "--noinput", "students", "0001"))  # no schedule table yet
        assert "Traceback" not in half.stderr
        assert "no issues" in checked(manage(env, "check", "--database", "default")).stdout
        full = checked(manage(env, "migrate", "--noinput"))
        assert "Traceback" not in full.stderr and "students.W002" not in full.stderr
        checked(manage(env, "logout_schedule", "--set", "02:00", "--timezone", "Europe/Dublin"))
        assert "no issues" in checked(manage(env, "check", "--database", "default")).stdout
    finally:
        if ON_POSTGRES:
            postgres_admin(f"DROP DATABASE {name} WITH (FORCE)")


# --- the file engine's folder -------------------------------------------------------------------

def test_the_file_engine_without_a_folder_warns_that_it_uses_the_temp_folder(settings, tmp_path):
    use_engine(settings, tmp_path, "file")
    settings.SESSION_FILE_PATH = None  # what lcstats.settings makes of an empty SESSION_FILE_PATH
    output = check()
    assert "students.W003" in output
    assert "SESSION_FILE_PATH is empty" in output and f"system temp folder ({tempfile.gettempdir()})" in output, output


def test_a_world_writable_session_folder_warns_and_a_private_one_does_not(settings, tmp_path):
    use_engine(settings, tmp_path, "file")
    folder = tmp_path / "sessions"
    folder.chmod(0o700)
    assert "students.W00" not in check()
    folder.chmod(0o1777)  # as /tmp is
    output = check()
    assert "students.W004" in output
    assert f"SESSION_FILE_PATH '{folder}' is writable by every local user (mode 1777)" in output, output


def test_other_engines_ignore_the_file_folder(settings, tmp_path):
    use_engine(settings, tmp_path, "db")
    settings.SESSION_FILE_PATH = None
    assert "students.W003" not in check()
