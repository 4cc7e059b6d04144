"""`nightly_logout_scheduler: none` applied by the site user itself, with no root: what a free PythonAnywhere
account (no scheduled task, no sudo) has to do. The real role, run by ansible-playbook as a throwaway OS user
(connection local, facts gathered as the playbook does), against this checkout's project and virtualenv and
a migrated SQLite database the user owns.

Checked: the play succeeds without root, runs nothing that needs it (packages, the cron daemon, logrotate,
runuser), installs the wrapper for the user, records the schedule with scheduler none, schedules nothing,
says how the logout still happens, and a second run changes nothing. A free account whose one daily task
the role made (against the PythonAnywhere stand-in, tests/support/pythonanywhere_standin.py) and that switches to
none with the token still set: the role's task is deleted, any other task stays.
The cron scheduler's part of the role, run as the site user into its own crontab: with
nightly_logout_per_user_zones its one entry fires every hour, and entries of earlier extra times go.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_DIR
from tests.support.role import ROOT_ONLY_TASKS
from tests.support.os_users import throwaway_user
from tests.support.pythonanywhere_standin import ACCOUNT_FREE_ONE, StandInAPI

VENV_DIR = REPO_DIR / ".venv"


@pytest.fixture(scope="module")
def site_user():
    with throwaway_user("nlfree", "it creates an OS user and runs the role as it") as name:
        yield name


@pytest.fixture(scope="module")
def home(site_user):
    home = Path("~" + site_user).expanduser()
    database = home / "db.sqlite3"
    subprocess.run([VENV_DIR / "bin/python", "manage.py", "migrate", "--noinput", "--verbosity", "0"],
                   cwd=REPO_DIR, env={**os.environ, "DATABASE_URL": f"sqlite:///{database}",
                                      "PYTHONDONTWRITEBYTECODE": "1"}, check=True)
    shutil.chown(database, site_user, site_user)
    return home


def as_site_user(site_user, home, *command):
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "ANSIBLE_ROLES_PATH": str(REPO_DIR / "ansible/roles"), "ANSIBLE_LOCALHOST_WARNING": "false",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false"}
    return subprocess.run(["runuser", "-u", site_user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           *map(str, command)], cwd=home, capture_output=True, text=True, timeout=600)


def apply_role(site_user, home, **overrides):
    variables = {
        "ansible_python_interpreter": str(VENV_DIR / "bin/python"),
        "nightly_logout_scheduler": "none",
        "nightly_logout_user": site_user,
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_venv_dir": str(VENV_DIR),
        "nightly_logout_script_path": str(home / "daily_logout.sh"),
        "nightly_logout_environment": {"DATABASE_URL": f"sqlite:///{home / 'db.sqlite3'}"},
        "nightly_logout_timezone": "Europe/Dublin",
        **overrides,
    }
    return run_play(site_user, home, variables, {"name": "Free account", "roles": ["nightly_logout"]})


def run_play(site_user, home, variables, play):
    """ansible-playbook with this one play on localhost and these variables, as the site user."""
    (home / "vars.json").write_text(json.dumps(variables))
    (home / "playbook.yml").write_text(json.dumps([{"hosts": "localhost", "connection": "local", **play}]))
    for name in ("vars.json", "playbook.yml"):
        shutil.chown(home / name, site_user, site_user)
    result = as_site_user(site_user, home, VENV_DIR / "bin/ansible-playbook", "-i", "localhost,",
                          home / "playbook.yml", "-e", f"@{home / 'vars.json'}")
    return result.returncode, result.stdout + result.stderr


def recorded_schedule(home):
    result = subprocess.run([VENV_DIR / "bin/python", "manage.py", "logout_schedule", "--show", "--json"],
                            cwd=REPO_DIR, capture_output=True, text=True, check=True,
                            env={**os.environ, "DATABASE_URL": f"sqlite:///{home / 'db.sqlite3'}",
                                 "PYTHONDONTWRITEBYTECODE": "1"})
    return json.loads(result.stdout)["schedule"]


def test_scheduler_none_is_applied_by_the_site_user_without_root(site_user, home):
    code, output = apply_role(site_user, home)
    assert code == 0, output
    # Skipped tasks are not displayed: a root-only task named here would have run.
    ran_root_only = [task for task in ROOT_ONLY_TASKS if f"nightly_logout : {task}]" in output]
    assert ran_root_only == [], output
    assert "nightly_logout_scheduler=none: nothing runs" in output, output
    assert (home / "daily_logout.sh").owner() == site_user
    schedule = recorded_schedule(home)
    assert (schedule["times"], schedule["timezone"], schedule["scheduler"]) == (["02:00"], "Europe/Dublin", "none")
    crontab = subprocess.run(["crontab", "-l", "-u", site_user], capture_output=True, text=True)
    assert "nightly_logout" not in crontab.stdout

    code, output = apply_role(site_user, home)
    assert code == 0, output
    assert " changed=0 " in output, output


def test_switching_from_a_pythonanywhere_task_to_none_deletes_the_task(site_user, home):
    token = "pa-token-5d0e2b7c91f4a6e3"
    with StandInAPI(site_user, token, account=ACCOUNT_FREE_ONE) as api:
        pythonanywhere = {"nightly_logout_pythonanywhere_token": token,
                          "nightly_logout_pythonanywhere_api_url": api.url}
        code, output = apply_role(site_user, home, nightly_logout_scheduler="pythonanywhere", **pythonanywhere)
        assert code == 0, output
        assert [task["command"] for task in api.tasks.values()] == [
            f"{home}/daily_logout.sh --scheduled >> {home}/logs/daily_logout.log 2>&1"]
        other = api.add_task(command="python3 backup.py", interval="daily", hour=4, minute=0)

        code, output = apply_role(site_user, home, **pythonanywhere)
        assert code == 0, output
        assert list(api.tasks) == [other["id"]], "the role's task is gone, the other stays"
        assert recorded_schedule(home)["scheduler"] == "none"
        assert token not in output

        code, output = apply_role(site_user, home, **pythonanywhere)
        assert code == 0 and " changed=0 " in output, output


def schedule_with_cron(site_user, home, **overrides):
    """The role's validate/run_times and cron/schedule, as the site user (its crontab needs no root). The rest of
    the role is left out: it installs cron with apt, which needs root; the facts of its earlier steps are
    given. The whole role with cron is proven by molecule/cron_cases (its zones host). Facts gathered, as the
    role's play does: they tell the role it already runs as the site user (no runuser)."""
    variables = {
        "ansible_python_interpreter": str(VENV_DIR / "bin/python"),
        "nightly_logout_scheduler": "cron",
        "nightly_logout_user": site_user,
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_resolved_venv_dir": str(VENV_DIR),
        "nightly_logout_script_path": str(home / "daily_logout.sh"),
        "nightly_logout_log_path": str(home / "logs/daily_logout.log"),
        "nightly_logout_packages_result": {"changed": False},  # packages.yml's apt, which needs root
        **overrides,
    }
    tasks = [{"name": f"The role's {part}",
              "ansible.builtin.include_role": {"name": "nightly_logout", "tasks_from": part}}
             for part in ("validate/run_times", "cron/schedule")]
    return run_play(site_user, home, variables, {"name": "Cron", "gather_facts": True, "tasks": tasks})


def role_cron_entries(site_user):
    """{name: schedule} of the role's entries ("#Ansible: NAME" then the line) in the user's crontab."""
    lines = subprocess.run(["crontab", "-l", "-u", site_user], capture_output=True, text=True).stdout.splitlines()
    return {marker.removeprefix("#Ansible: "): " ".join(line.split()[:5])
            for marker, line in zip(lines, lines[1:]) if marker.startswith("#Ansible: nightly_logout")}


@pytest.fixture
def cron_user():
    with throwaway_user("nlcron", "it creates an OS user and writes its crontab") as name:
        yield name, Path("~" + name).expanduser()


def test_per_user_zones_make_the_one_cron_entry_hourly(cron_user):
    site_user, home = cron_user
    code, output = schedule_with_cron(site_user, home, nightly_logout_extra_times=[{"hour": 14, "minute": 15}])
    assert code == 0, output
    assert role_cron_entries(site_user) == {"nightly_logout": "0 2 * * *", "nightly_logout extra 1": "15 14 * * *"}

    code, output = schedule_with_cron(site_user, home, nightly_logout_per_user_zones=True, nightly_logout_minute=15,
                                      nightly_logout_timezone="Europe/Dublin")
    assert code == 0, output
    assert role_cron_entries(site_user) == {"nightly_logout": "15 * * * *"}, "one hourly entry, the extra one gone"

    code, output = schedule_with_cron(site_user, home, nightly_logout_per_user_zones=True, nightly_logout_minute=15,
                                      nightly_logout_timezone="Europe/Dublin")
    assert code == 0 and " changed=0 " in output, output
