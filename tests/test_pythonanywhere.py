"""The pythonanywhere scheduler: the real role, run by ansible-playbook (connection local, temp paths, the
site's database a migrated SQLite file), against a local STAND-IN of PythonAnywhere's API
(tests/support/pythonanywhere_standin.py), because the real API cannot be reached from here. The stand-in plays
three kinds of account (paid; free with one daily task; free with none) and records what the role sent.

Checked: the role only ever asks for one daily task at a fixed UTC time (never hourly), with hour 0 and
minute 0 sent as the number 0; a second run changes nothing; a task from before is updated in place; the
schedule is recorded in the site's database; an account with no task to spare gets a message naming
`nightly_logout_scheduler: none` and nothing is made; the expiry is reported; the token never shows; state
absent deletes only the role's task and clears the recorded schedule; nothing root-only runs.
With nightly_logout_per_user_zones (each user at the time in their own zone): one hourly task on a paid
account, left alone by a second run; a free account is told to pay or use `nightly_logout_scheduler: none`.
"""
import getpass
import json
import os
import shutil
import subprocess
import urllib.request
from datetime import date, timedelta

import pytest

from tests.support import REPO_DIR, role
from tests.support.pythonanywhere_standin import (
    ACCOUNT_FREE_NONE, ACCOUNT_FREE_ONE, ACCOUNT_PAID, FREE_EXPIRY_DAYS, RATE_LIMIT, StandInAPI,
)

VENV_DIR = REPO_DIR / ".venv"
TOKEN = "pa-token-3b1f9c27e0d84a5c"
USERNAME = "lcaimaths"
# "apt": no apt module runs at all, whatever its task's name.
ROOT_ONLY_TASKS = [*role.ROOT_ONLY_TASKS, "apt"]
NO_ALLOWANCE = "set nightly_logout_scheduler: none"


@pytest.fixture
def api():
    with StandInAPI(USERNAME, TOKEN) as stand_in:
        yield stand_in


def stand_in(account):
    return StandInAPI(USERNAME, TOKEN, account=account)


def manage(database_url, *args, check=True):
    return subprocess.run([VENV_DIR / "bin/python", "manage.py", *args], cwd=REPO_DIR,
                          env={**os.environ, "DATABASE_URL": database_url},
                          capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory):
    database = tmp_path_factory.mktemp("pa-db") / "db.sqlite3"
    manage(f"sqlite:///{database}", "migrate", "--noinput", "--verbosity", "0")
    return database


@pytest.fixture
def site(tmp_path, migrated_database):
    (tmp_path / "scripts").mkdir()
    shutil.copy(migrated_database, tmp_path / "db.sqlite3")
    return tmp_path


def database_url(site):
    return f"sqlite:///{site / 'db.sqlite3'}"


def recorded(site):
    """The schedule in the site's database, as `logout_schedule --show --json` gives it (None: none)."""
    return json.loads(manage(database_url(site), "logout_schedule", "--show", "--json").stdout)["schedule"]


def run_role(site, api, token=TOKEN, tasks=None, **overrides):
    """ansible-playbook with the role, or with `tasks` (a list of tasks using the role's parts) instead."""
    variables = {
        "ansible_python_interpreter": str(VENV_DIR / "bin/python"),
        "nightly_logout_scheduler": "pythonanywhere",
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_venv_dir": str(VENV_DIR),
        "nightly_logout_user": getpass.getuser(),
        "nightly_logout_script_path": str(site / "scripts/daily_logout.sh"),
        "nightly_logout_log_dir": str(site / "logs"),
        "nightly_logout_environment": {"DATABASE_URL": database_url(site)},
        "nightly_logout_pythonanywhere_username": USERNAME,
        "nightly_logout_pythonanywhere_token": token,
        "nightly_logout_pythonanywhere_api_url": api.url,
        **overrides,
    }
    (site / "vars.json").write_text(json.dumps(variables))
    playbook = site / "playbook.yml"
    play = {"name": "PythonAnywhere", "hosts": "localhost", "connection": "local", "gather_facts": False}
    play.update({"roles": ["nightly_logout"]} if tasks is None else {"tasks": tasks})
    playbook.write_text(json.dumps([play]))
    result = subprocess.run(
        [VENV_DIR / "bin/ansible-playbook", "-i", "localhost,", playbook, "-e", f"@{site / 'vars.json'}"],
        cwd=site, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_DIR / "ansible/roles"),
             "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false",
             "ANSIBLE_NOCOLOR": "1"},
    )
    output = result.stdout + result.stderr
    assert not token or token not in output, "the token leaked into the output"
    return result.returncode, " ".join(output.split())


def writes(api, since=0):
    return [(method, path, body) for method, path, body in api.requests[since:] if method != "GET"]


def recap_changed(output):
    return int(output.split("changed=")[-1].split()[0])


def wanted_command(site):
    return f"{site}/scripts/daily_logout.sh --scheduled >> {site}/logs/daily_logout.log 2>&1"


def test_paid_account_one_daily_task_then_nothing_then_update_then_delete(site, api):
    # Dublin's 02:00 is 01:00 UTC in summer, 02:00 in winter: one daily task at 02:00 UTC, after both.
    code, output = run_role(site, api, nightly_logout_timezone="Europe/Dublin")
    assert code == 0, output
    [(method, _, body)] = writes(api)
    assert method == "POST"
    assert body["command"] == wanted_command(site) and body["interval"] == "daily"
    assert (body["hour"], body["minute"]) == (2, 0) and type(body["minute"]) is int and type(body["hour"]) is int
    [task] = api.tasks.values()
    assert f"Warning: PythonAnywhere scheduled task {task['id']} (02:00, daily, UTC) has no expiry date" in output
    wrapper = (site / "scripts/daily_logout.sh").read_text()
    assert "--scheduled" in wrapper and "--due-at" not in wrapper
    schedule = recorded(site)
    assert (schedule["timezone"], schedule["scheduler"]) == ("Europe/Dublin", "pythonanywhere"), schedule
    assert "02:00" in json.dumps(schedule), schedule
    for name in ROOT_ONLY_TASKS:
        assert f"[nightly_logout : {name}" not in output, f"a root-only task ran: {name}"

    seen = len(api.requests)
    code, output = run_role(site, api, nightly_logout_timezone="Europe/Dublin")
    assert code == 0, output
    assert writes(api, seen) == [] and recap_changed(output) == 0, output

    seen = len(api.requests)
    code, output = run_role(site, api, nightly_logout_hour=0, nightly_logout_minute=0)
    assert code == 0, output
    [(method, path, body)] = writes(api, seen)
    assert (method, path) == ("PATCH", f"/api/v0/user/{USERNAME}/schedule/{task['id']}/")
    assert body["interval"] == "daily" and body["hour"] == 0 and type(body["hour"]) is int and body["minute"] == 0
    assert api.tasks[task["id"]]["hour"] == 0 and len(api.tasks) == 1
    assert "00:00" in json.dumps(recorded(site))

    api.add_task(command="python3 other.py", interval="daily", hour=3, minute=0)
    code, output = run_role(site, api, nightly_logout_state="absent")
    assert code == 0, output
    assert [t["command"] for t in api.tasks.values()] == ["python3 other.py"], "only the wrapper's task goes"
    assert not (site / "scripts/daily_logout.sh").exists()
    assert recorded(site) is None


@pytest.mark.parametrize("zone, hour, utc", [
    ("Europe/Helsinki", 2, (0, 0)),  # 23:00 UTC in summer, 00:00 in winter: after both is 00:00
    ("America/New_York", 20, (1, 0)),  # 00:00 UTC in summer, 01:00 in winter
    ("Asia/Kolkata", 2, (20, 30)),  # no DST: the one UTC time
], ids=["helsinki", "new-york", "kolkata"])
def test_the_daily_time_is_after_every_utc_time_the_local_time_can_be(site, api, zone, hour, utc):
    code, output = run_role(site, api, nightly_logout_timezone=zone, nightly_logout_hour=hour)
    assert code == 0, output
    [(_, _, body)] = writes(api)
    assert (body["interval"], body["hour"], body["minute"]) == ("daily", *utc)


def test_an_hourly_task_from_before_becomes_daily(site, api):
    old = api.add_task(command=wanted_command(site), interval="hourly", minute=0)
    code, output = run_role(site, api, nightly_logout_timezone="Europe/Dublin")
    assert code == 0, output
    [(method, path, body)] = writes(api)
    assert (method, path) == ("PATCH", f"/api/v0/user/{USERNAME}/schedule/{old['id']}/")
    assert (body["interval"], body["hour"]) == ("daily", 2)
    assert list(api.tasks) == [old["id"]] and api.tasks[old["id"]]["interval"] == "daily"


def test_free_account_with_one_daily_task_gets_it_and_its_expiry(site):
    with stand_in(ACCOUNT_FREE_ONE) as api:
        code, output = run_role(site, api, nightly_logout_hour=3, nightly_logout_minute=15)
        assert code == 0, output
        [(method, _, body)] = writes(api)
        [task] = api.tasks.values()
    assert method == "POST" and (body["interval"], body["hour"], body["minute"]) == ("daily", 3, 15)
    expiry = (date.today() + timedelta(days=FREE_EXPIRY_DAYS)).isoformat()
    assert task["expiry"] == expiry
    assert f"scheduled task {task['id']} (03:15, daily, UTC) expires on {expiry}" in output
    assert "four weeks at a time" in output
    assert recorded(site)["scheduler"] == "pythonanywhere"


def assert_nothing_made(site, api, tasks_before):
    assert not (site / "scripts/daily_logout.sh").exists(), "the wrapper was installed"
    assert not (site / "logs").exists(), "the log folder was made"
    assert recorded(site) is None, "the schedule was recorded"
    assert api.tasks == tasks_before


def test_free_account_with_no_task_is_told_to_use_scheduler_none(site):
    with stand_in(ACCOUNT_FREE_NONE) as api:
        code, output = run_role(site, api, nightly_logout_timezone="Europe/Dublin")
        assert code != 0
        [(method, _, body)] = writes(api)
        assert method == "POST" and body["interval"] == "daily"
        assert "PythonAnywhere refused to create the scheduled task for lcaimaths (HTTP 403" in output, output
        assert NO_ALLOWANCE in output and "Nothing was changed" in output
        assert "logout_schedule --set 02:00 --timezone Europe/Dublin --scheduler none`" in output, output
        assert_nothing_made(site, api, {})


def test_free_account_whose_one_task_is_taken_is_told_to_use_scheduler_none(site):
    with stand_in(ACCOUNT_FREE_ONE) as api:
        other = api.add_task(command="python3 backup.py", interval="daily", hour=4, minute=0)
        before = {task_id: dict(task) for task_id, task in api.tasks.items()}
        code, output = run_role(site, api)
        assert code != 0 and NO_ALLOWANCE in output, output
        assert [method for method, _, _ in writes(api)] == ["POST"], "the other task was touched"
        assert_nothing_made(site, api, before)
        assert api.tasks[other["id"]]["command"] == "python3 backup.py"


def test_an_unmigrated_database_stops_the_role_before_any_change(site, api):
    (site / "db.sqlite3").unlink()
    code, output = run_role(site, api)
    assert code != 0
    assert f"run `manage.py migrate` in {REPO_DIR}" in output, output
    assert api.requests == [] and not (site / "scripts/daily_logout.sh").exists()


def test_a_refused_token_fails_with_a_clear_message(site, api):
    code, output = run_role(site, api, token="wrong-token-123456")
    assert code != 0
    assert "the API token in nightly_logout_pythonanywhere_token was refused" in output
    assert "HTTP 401" in output and "wrong-token-123456" not in output
    assert api.tasks == {}


def test_the_rate_limit_is_reported(site):
    # The stand-in's clock stands still, so the minute does not run out while ansible-playbook starts.
    with StandInAPI(USERNAME, TOKEN, clock=lambda: 0.0) as api:
        use_up_the_minute(api)
        code, output = run_role(site, api)
    assert code != 0 and "HTTP 429" in output and "40 requests a minute" in output


def use_up_the_minute(api):
    for _ in range(RATE_LIMIT):  # use up the minute's 40 requests on the list endpoint
        request = urllib.request.Request(f"{api.url}/api/v0/user/{USERNAME}/schedule/",
                                         headers={"Authorization": f"Token {TOKEN}"})
        urllib.request.urlopen(request).read()


@pytest.mark.parametrize("overrides, message", [
    ({"nightly_logout_pythonanywhere_token": ""}, "nightly_logout_pythonanywhere_token (the API token; empty)"),
    ({"nightly_logout_mail_on_failure": True}, "nightly_logout_mail_on_failure needs root"),
    ({"nightly_logout_extra_times": [{"hour": 3}]}, "manages one scheduled task"),
])
def test_settings_this_backend_cannot_honour_fail_before_any_change(site, api, overrides, message):
    token = overrides.pop("nightly_logout_pythonanywhere_token", TOKEN)
    code, output = run_role(site, api, token=token, **overrides)
    assert code != 0 and message in output, output
    assert api.requests == [] and not (site / "scripts/daily_logout.sh").exists()



# Per-user zones. Until the site's logout_schedule knows --per-user-zones (the Django side of issue 15 part 3)
# the whole role stops at its check of the schedule, so these run only the role's scheduling parts: what it
# sends PythonAnywhere. The facts the role's earlier steps set, given here as those steps would set them.
def schedule_on_pythonanywhere(site, api, **overrides):
    manage_argv = [str(VENV_DIR / "bin/python"), "manage.py"]
    steps = {
        "nightly_logout_resolved_venv_dir": str(VENV_DIR),
        "nightly_logout_log_path": f"{site}/logs/daily_logout.log",
        "nightly_logout_manage_argv": manage_argv,
        "nightly_logout_schedule_set_argv": manage_argv + [
            "logout_schedule", "--set", "02:00", "--timezone", "UTC", "--scheduler", "pythonanywhere",
            "--per-user-zones"],
    }
    tasks = [{"name": f"The role's {part}",
              "ansible.builtin.include_role": {"name": "nightly_logout", "tasks_from": part}}
             for part in ("validate/run_times", "pythonanywhere/schedule")]
    return run_role(site, api, tasks=tasks, nightly_logout_per_user_zones=True, **steps, **overrides)


def test_per_user_zones_get_one_hourly_task_at_the_minute_then_nothing(site):
    with stand_in(ACCOUNT_PAID) as api:
        code, output = schedule_on_pythonanywhere(site, api, nightly_logout_minute=5)
        assert code == 0, output
        [(method, _, body)] = writes(api)
        assert method == "POST" and body["command"] == wanted_command(site)
        assert (body["interval"], body["minute"]) == ("hourly", 5) and "hour" not in body, body
        [task] = api.tasks.values()
        assert f"scheduled task {task['id']} (05 minutes past every hour, hourly, UTC)" in output, output

        # PythonAnywhere keeps some hour on an hourly task: the second run must not take it for a change.
        api.tasks[task["id"]]["hour"] = 7
        seen = len(api.requests)
        code, output = schedule_on_pythonanywhere(site, api, nightly_logout_minute=5)
        assert code == 0, output
        assert writes(api, seen) == [] and recap_changed(output) == 0, output


def test_per_user_zones_turn_a_daily_task_hourly(site, api):
    old = api.add_task(command=wanted_command(site), interval="daily", hour=2, minute=0)
    code, output = schedule_on_pythonanywhere(site, api)
    assert code == 0, output
    [(method, path, body)] = writes(api)
    assert (method, path) == ("PATCH", f"/api/v0/user/{USERNAME}/schedule/{old['id']}/")
    assert (body["interval"], body["minute"]) == ("hourly", 0)
    assert list(api.tasks) == [old["id"]] and api.tasks[old["id"]]["interval"] == "hourly"


@pytest.mark.parametrize("account, daily_task_before", [
    (ACCOUNT_FREE_ONE, False), (ACCOUNT_FREE_ONE, True), (ACCOUNT_FREE_NONE, False),
], ids=["free-one-task", "free-daily-task-before", "free-no-task"])
def test_per_user_zones_on_a_free_account_say_what_to_do_and_change_nothing(site, account, daily_task_before):
    with stand_in(account) as api:
        if daily_task_before:
            api.add_task(command=wanted_command(site), interval="daily", hour=2, minute=0)
        before = {task_id: dict(task) for task_id, task in api.tasks.items()}
        code, output = schedule_on_pythonanywhere(site, api)
        assert code != 0, output
        [(method, _, body)] = writes(api)
        assert method == ("PATCH" if daily_task_before else "POST") and body["interval"] == "hourly"
        assert "HTTP 403" in output, output
        assert ("nightly_logout_per_user_zones needs an hourly task, and PythonAnywhere gives those only to paid"
                " accounts: upgrade the account, or set nightly_logout_scheduler: none: the site's clock cutoff"
                " still logs every user out at the scheduled time in their own zone") in output, output
        assert "Nothing was changed" in output
        assert "logout_schedule --set 02:00 --timezone UTC --scheduler none --per-user-zones`" in output, output
        assert api.tasks == before
