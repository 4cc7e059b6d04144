"""The wrapper as cron runs it, for tests/test_wrapper*.py: render it from the role's template with real
Ansible, run it with cron's bare environment and `SCRIPT >> LOG 2>&1` line, a migrated SQLite site with
two signed-in users (the `migrated_database` and `site` fixtures), and a local mailbox user."""
import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support import REPO_DIR

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


def wait_for_file(path: Path, seconds: float = 30) -> str:
    """The MTA delivers in a process of its own: wait for the mailbox instead of sleeping blindly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no mail arrived in {path} within {seconds}s")
