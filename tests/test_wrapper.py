"""The wrapper script as cron runs it: rendered from the role's template by real Ansible, then run for
real against this repository's Django project (SQLite in a temp folder), with cron's bare environment
and cron's `SCRIPT >> LOG 2>&1` line. Checks the log lines and exit codes of the shared contract."""

import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_DIR / ".venv"
TEMPLATE = REPO_DIR / "ansible/roles/nightly_logout/templates/daily_logout.sh.j2"
PING_CONFIG_TEMPLATE = REPO_DIR / "ansible/roles/nightly_logout/templates/daily_logout_ping.curl.j2"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
# A folder name that only survives correct shell quoting of the rendered values.
AWKWARD_NAME = "it's \"$HOME\" `id` db"


def render_wrapper(workdir: Path, **overrides) -> Path:
    """Render the wrapper (and, with a ping URL, its curl config) with real Ansible, as the role does."""
    variables = {
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_resolved_venv_dir": str(VENV_DIR),
        "nightly_logout_script_path": str(workdir / "daily_logout.sh"),
        "nightly_logout_log_path": str(workdir / "logs" / "daily_logout.log"),
        "nightly_logout_lock_path": str(workdir / "logs" / ".daily_logout.lock"),
        "nightly_logout_settings_module": "lcstats.settings",
        "nightly_logout_environment": {},
        "nightly_logout_keep_staff": False,
        "nightly_logout_keep_remembered": False,
        "nightly_logout_exclude_users": [],
        "nightly_logout_mail_on_failure": False,
        "nightly_logout_mail_to": "root",
        "nightly_logout_mail_subject": "LCAI Maths: Daily logout failed",
        "nightly_logout_ping_url": "",
        "nightly_logout_ping_config_path": str(workdir / "logs" / ".daily_logout_ping.curl"),
        "nightly_logout_ping_body": True,
        "nightly_logout_ping_timeout": 10,
        "nightly_logout_ping_retries": 2,
        "nightly_logout_textfile_dir": "",
    }
    variables.update(overrides)
    (workdir / "logs").mkdir(exist_ok=True)
    script = Path(variables["nightly_logout_script_path"])
    render_template(workdir, TEMPLATE, script, variables)
    if variables["nightly_logout_ping_url"]:
        ping_config = Path(variables["nightly_logout_ping_config_path"])
        render_template(workdir, PING_CONFIG_TEMPLATE, ping_config, variables, mode="0600")
    return script


def render_template(workdir: Path, template: Path, dest: Path, variables: dict, mode: str = "0750") -> None:
    """Render one of the role's templates with the ansible.builtin.template module, as the role does."""
    vars_file = workdir / "wrapper-vars.json"
    vars_file.write_text(json.dumps(variables))
    subprocess.run(
        [
            VENV_DIR / "bin/ansible", "localhost", "--connection", "local",
            "--module-name", "ansible.builtin.template",
            "--args", json.dumps({"src": str(template), "dest": str(dest), "mode": mode}),
            "--extra-vars", f"@{vars_file}",
        ],
        cwd=workdir, check=True, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"},
    )


def run_as_cron(script: Path, log: Path, *arguments: str, by_hand: bool = False) -> int:
    """Run the wrapper the way the role's cron line does (`SCRIPT --scheduled >> LOG 2>&1`): bare
    environment, /bin/sh, output appended to the log. `by_hand`: without --scheduled, as a person would."""
    cron_env = {"HOME": "/root", "LOGNAME": "root", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    words = [str(script), *([] if by_hand else ["--scheduled"]), *arguments]
    command = " ".join(map(shlex.quote, words)) + f" >> {shlex.quote(str(log))} 2>&1"
    return subprocess.run(["/bin/sh", "-c", command], env=cron_env, cwd="/", timeout=120).returncode


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VENV_DIR / "bin/python", "manage.py", *args],
        cwd=REPO_DIR, env={**os.environ, "DATABASE_URL": database_url},
        check=True, capture_output=True, text=True,
    )


CREATE_SESSIONS = """
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
User = get_user_model()
for name in ("alice", "bob"):
    user = User.objects.create_user(name, password="not-used-here")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
"""
RECORDED_TWO_DAYS_AGO = """
from datetime import timedelta
from django.utils import timezone
from students.models import LogoutSchedule
LogoutSchedule.objects.update(recorded_at=timezone.now() - timedelta(days=2))
"""
COUNT_SESSIONS = "from django.contrib.sessions.models import Session; print(Session.objects.count())"


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory) -> Path:
    """One migrated SQLite file; each test gets a copy."""
    database = tmp_path_factory.mktemp("template-db") / "db.sqlite3"
    manage(f"sqlite:///{database}", "migrate", "--noinput", "--verbosity", "0")
    return database


@pytest.fixture
def site(tmp_path, migrated_database):
    """A database with two logged-in users, in a folder whose name needs quoting."""
    folder = tmp_path / AWKWARD_NAME
    folder.mkdir()
    database = folder / "db.sqlite3"
    shutil.copy(migrated_database, database)
    database_url = f"sqlite:///{database}"
    manage(database_url, "shell", "--command", CREATE_SESSIONS)
    # The role records the schedule the wrapper's `--scheduled` run stands for. Recorded two days ago, so
    # a scheduled time has passed since (02:00 UTC); these sessions carry no login time: older than it.
    manage(database_url, "logout_schedule", "--set", "02:00", "--timezone", "UTC")
    manage(database_url, "shell", "--command", RECORDED_TWO_DAYS_AGO)
    return database_url


def session_count(database_url: str) -> int:
    # Verbosity 0: no "N objects imported automatically" banner before the figure.
    return int(manage(database_url, "shell", "--verbosity", "0", "--command", COUNT_SESSIONS).stdout.strip())


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_rendered_wrapper_starts_with_the_shebang_and_the_managed_comment(tmp_path):
    lines = render_wrapper(tmp_path).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "Ansible managed" in lines[1] + lines[2]
    assert lines[-1] == 'main "$@"'


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "nightly_logout_keep_staff": True,
            "nightly_logout_exclude_users": ["admin", "o'neil"],
            "nightly_logout_environment": {"DATABASE_URL": "postgres://u:p@db:5432/lcstats", "CACHE_URL": "redis://r:6379/0"},
            "nightly_logout_mail_on_failure": True,
            "nightly_logout_timezone": "Europe/Dublin",
            "nightly_logout_due_at": "02:00",
            "nightly_logout_ping_url": "https://hc-ping.com/0f6bd5a2-5d2f-4f5e-9d0e-6b4f3c1f7a21",
            "nightly_logout_ping_body": False,
            "nightly_logout_textfile_dir": "/var/lib/prometheus/node-exporter",
        },
    ],
    ids=["defaults", "every-option"],
)
def test_rendered_wrapper_is_shellcheck_clean(tmp_path, options):
    script = render_wrapper(tmp_path, **options)
    result = subprocess.run(["shellcheck", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_success_logs_the_reference_lines_and_logs_everyone_out(tmp_path, site):
    assert session_count(site) == 2
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})

    assert run_as_cron(script, log) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Running daily user logout\.\.\.", lines[0]), lines
    assert "Successfully logged out all users by deleting 2 session(s)" in lines
    assert "Also cleaned up 0 expired session(s)" in lines
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", lines[-1]), lines
    assert session_count(site) == 0


def test_options_reach_the_command(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(
        tmp_path, nightly_logout_environment={"DATABASE_URL": site}, nightly_logout_exclude_users=["alice"]
    )

    assert run_as_cron(script, log) == 0

    assert "Successfully logged out all users by deleting 1 session(s)" in log_lines(log)
    assert session_count(site) == 1


def test_a_failing_command_logs_its_exit_code_and_the_wrapper_returns_it(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(
        tmp_path, nightly_logout_environment={"DATABASE_URL": site}, nightly_logout_exclude_users=["nobody-by-this-name"]
    )

    status = run_as_cron(script, log)

    assert status == 1
    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Running daily user logout\.\.\.", lines[0]), lines
    assert any("nobody-by-this-name" in line for line in lines), lines
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout failed with exit code 1", lines[-1]), lines
    assert not any("completed successfully" in line for line in lines)
    assert session_count(site) == 2


def test_a_scheduled_run_the_command_skips_logs_its_reason_and_exits_0(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    # The first run stands for the latest recorded scheduled time, the next one finds it done (exit 3).
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})
    assert run_as_cron(script, log) == 0
    assert session_count(site) == 0
    manage(site, "shell", "--command", CREATE_SESSIONS.replace('"alice", "bob"', '"carol",'))

    assert run_as_cron(script, log) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout skipped: Already logged out .* by host .*", lines[-1]), lines
    assert lines[-2] == lines[-1].split("skipped: ", 1)[1]  # the command's own line, just before
    assert len([line for line in lines if line.endswith("Daily logout completed successfully")]) == 1  # the first run
    assert session_count(site) == 1


def test_by_hand_without_scheduled_it_logs_everyone_out_now(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})
    assert run_as_cron(script, log) == 0  # the scheduled run of the latest scheduled time
    manage(site, "shell", "--command", CREATE_SESSIONS.replace('"alice", "bob"', '"carol",'))

    # The reference's manual test: the script by hand logs out whoever is in now, scheduled time done or not.
    assert run_as_cron(script, log, by_hand=True) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", lines[-1]), lines
    assert "Successfully logged out all users by deleting 1 session(s)" in lines
    assert session_count(site) == 0


def test_an_unknown_argument_is_refused_with_2_and_runs_nothing(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})

    assert run_as_cron(script, log, "--now", by_hand=True) == 2

    assert log_lines(log) == [f"Usage: {script} [--scheduled]"]
    assert session_count(site) == 2


def test_a_run_that_finds_the_lock_held_skips_with_76(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})

    with open(tmp_path / "logs" / ".daily_logout.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # an earlier run still going
        status = run_as_cron(script, log)

    assert status == 76
    lines = log_lines(log)
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"{TIMESTAMP}: Another daily logout is still running; skipping", lines[0]), lines
    assert session_count(site) == 2
    # Once the lock is free the next run goes ahead.
    assert run_as_cron(script, log) == 0


@pytest.mark.parametrize(
    "variable, missing_file",
    [("nightly_logout_resolved_venv_dir", "bin/python"), ("nightly_logout_project_dir", "manage.py")],
    ids=["virtualenv", "project"],
)
def test_a_missing_project_or_virtualenv_exits_78_naming_the_path(tmp_path, variable, missing_file):
    log = tmp_path / "logs" / "daily_logout.log"
    missing = tmp_path / "not-there"
    script = render_wrapper(tmp_path, **{variable: str(missing)})

    assert run_as_cron(script, log) == 78

    assert re.fullmatch(rf"{TIMESTAMP}: .*{re.escape(str(missing / missing_file))} not found", log_lines(log)[-1])


@pytest.fixture
def mailbox_user():
    """A throwaway local user whose mailbox (/var/mail/USER) the local MTA delivers to."""
    if os.geteuid() != 0:
        pytest.fail("the mail test creates a local user: run the tests as root (as CI does)")
    name = f"nlmail{uuid.uuid4().hex[:8]}"
    # Exim delivers as the user from its home folder, so the user needs one.
    subprocess.run(["useradd", "--create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    mailbox = Path("/var/mail") / name
    yield name, mailbox
    # Exim may still be delivering as the user (seen under load): userdel refuses while it runs (exit 8).
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-u", name], capture_output=True).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    subprocess.run(["userdel", "--remove", name], check=True, capture_output=True)
    mailbox.unlink(missing_ok=True)


def test_a_failure_mails_the_tail_of_the_log_through_the_local_mta(tmp_path, site, mailbox_user):
    name, mailbox = mailbox_user
    assert pwd.getpwnam(name)
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(
        tmp_path,
        nightly_logout_environment={"DATABASE_URL": site},
        nightly_logout_exclude_users=["nobody-by-this-name"],
        nightly_logout_mail_on_failure=True,
        nightly_logout_mail_to=name,
    )

    assert run_as_cron(script, log) == 1

    mail = wait_for_file(mailbox)
    assert "Subject: LCAI Maths: Daily logout failed" in mail
    assert "failed with exit code 1" in mail
    assert "Running daily user logout..." in mail  # the tail of the log
    assert "nobody-by-this-name" in mail


def wait_for_file(path: Path, seconds: float = 30) -> str:
    """The MTA delivers in a process of its own: wait for the mailbox instead of sleeping blindly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no mail arrived in {path} within {seconds}s")


# "Keep me signed in" (students/remember.py): the role passes --keep-remembered to the job only when on.
def test_the_role_passes_keep_remembered_to_the_job_only_when_on(tmp_path):
    options = {}
    for state in (True, False):
        (tmp_path / str(state)).mkdir()
        script = render_wrapper(tmp_path / str(state), nightly_logout_keep_remembered=state)
        options[state] = re.search(r"COMMAND_OPTIONS=\((.*?)\n\)", script.read_text(), re.S)[1].split()
        assert subprocess.run(["shellcheck", script], capture_output=True).returncode == 0
    assert options == {True: ["--keep-remembered"], False: []}
