"""`manage.py logout_all_users` as cron runs it: a real process, real exit codes, real stderr.

Each test gets its own database: a SQLite file, or (when the suite runs on PostgreSQL) a fresh
database on the same server, so the lock is the real advisory lock between real processes."""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys

import pytest

from students.tests.helpers import (BASE_ENV, ON_POSTGRES, REPO_DIR, checked, database_url_for, manage,
                                    postgres_admin)

SEED = (
    "from django.contrib.auth.models import User\n"
    "from django.contrib.sessions.backends.db import SessionStore\n"
    "alice = User.objects.create_user('alice')\n"
    "s = SessionStore(); s['_auth_user_id'] = str(alice.pk); s.create()\n"
    "s = SessionStore(); s.create()\n"
    "s = SessionStore(); s.set_expiry(-10); s.create()\n"
)
@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One migrated, seeded database per module (alice's session, an anonymous one, an expired one);
    each test gets a copy, since migrating takes seconds."""
    folder = tmp_path_factory.mktemp("cmd")
    name = f"cmd_template_{secrets.token_hex(4)}"
    if ON_POSTGRES:
        postgres_admin(f"CREATE DATABASE {name}")
    env = {**os.environ, **BASE_ENV, "DATABASE_URL": database_url_for(name, folder)}
    checked(manage(env, "migrate", "--noinput", "-v", "0"))
    checked(manage(env, "shell", "--no-imports", "-c", SEED))
    yield name, folder
    if ON_POSTGRES:
        postgres_admin(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def env(template):
    template_name, folder = template
    name = f"cmd_{secrets.token_hex(4)}"
    if ON_POSTGRES:
        postgres_admin(f"CREATE DATABASE {name} TEMPLATE {template_name}")
    else:
        shutil.copy(folder / f"{template_name}.sqlite3", folder / f"{name}.sqlite3")
    yield {**os.environ, **BASE_ENV, "DATABASE_URL": database_url_for(name, folder)}
    if ON_POSTGRES:
        postgres_admin(f"DROP DATABASE {name} WITH (FORCE)")


def test_success_prints_the_contract_lines_and_exits_0(env):
    result = checked(manage(env, "logout_all_users"))
    assert result.stdout.splitlines() == [
        "Successfully logged out all users by deleting 2 session(s)",
        "Also cleaned up 1 expired session(s)",
    ]
    assert result.stderr == ""


def test_the_summary_file_holds_a_successs_counts_as_json(env, tmp_path):
    summary = tmp_path / "summary.json"
    checked(manage(env, "logout_all_users", "--summary-file", str(summary)))
    written = json.loads(summary.read_text())
    assert (written["outcome"], written["exit_status"], written["error"]) == ("success", 0, None)
    assert (written["deleted_active"], written["deleted_expired"], written["kept_sessions"]) == (2, 1, 0)
    assert [path.name for path in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left


def test_the_summary_file_replaces_the_last_one_with_a_failures_outcome(env, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text('{"outcome": "success", "deleted_active": 5}')
    result = manage(env, "logout_all_users", "--exclude-user", "ghost", "--summary-file", str(summary))
    assert result.returncode == 1
    written = json.loads(summary.read_text())
    assert (written["outcome"], written["exit_status"]) == ("failed", 1)
    assert written["error"] == "unknown username(s) for --exclude-user: ghost"
    assert (written["deleted_active"], written["deleted_expired"]) == (0, 0)


def test_a_summary_file_in_a_missing_folder_is_bad_usage_and_changes_nothing(env, tmp_path):
    summary = tmp_path / "not-there" / "summary.json"
    result = manage(env, "logout_all_users", "--summary-file", str(summary))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"CommandError: --summary-file {summary}: the folder {summary.parent} does not exist or is not writable"]
    assert "Live sessions: 2 (1 authenticated, 1 anonymous)" in checked(manage(env, "logout_all_users", "--dry-run")).stdout


def test_dry_run_exits_0_and_a_second_look_sees_the_same(env):
    first = checked(manage(env, "logout_all_users", "--dry-run")).stdout
    assert "Live sessions: 2 (1 authenticated, 1 anonymous)" in first
    assert "Expired sessions: 1" in first
    assert checked(manage(env, "logout_all_users", "--dry-run")).stdout == first


def test_unknown_user_exits_1_with_one_line(env):
    result = manage(env, "logout_all_users", "--exclude-user", "ghost")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["CommandError: unknown username(s) for --exclude-user: ghost"]
    assert "Successfully" not in result.stdout


def test_bad_usage_exits_2(env):
    result = manage(env, "logout_all_users", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr


def test_unsupported_engine_exits_1_naming_it(env):
    result = manage({**env, "SESSION_ENGINE": "cache"}, "logout_all_users")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "'django.contrib.sessions.backends.cache'" in line and "LocMemCache" in line


def test_unreachable_database_exits_1_naming_it(env):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = manage({**env, "DATABASE_URL": f"postgres://nobody@127.0.0.1:{port}/lcstats"}, "logout_all_users")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: Database error, no session deleted:") and f"port {port}" in line
    assert result.stdout == ""


def test_lock_held_by_another_process_exits_75(env):
    holder = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c",
         "import sys\nfrom students.lock import run_lock\nwith run_lock():\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n"],
        cwd=REPO_DIR, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = manage(env, "logout_all_users")
        assert result.returncode == 75, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith("CommandError: Another logout run holds the lock (")
        assert "Successfully" not in result.stdout
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert "deleting 2 session(s)" in checked(manage(env, "logout_all_users")).stdout


def test_an_unmigrated_database_says_so(env, tmp_path):
    if ON_POSTGRES:
        pytest.skip("the SQLite case is enough to check the hint")
    result = manage({**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}, "logout_all_users")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "no such table" in line and "manage.py migrate" in line
