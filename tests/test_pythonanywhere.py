"""The pythonanywhere scheduler: the real role, run by ansible-playbook (connection local, temp paths),
against a local STAND-IN of PythonAnywhere's API (tests/pythonanywhere_standin.py), because the real
API cannot be reached from here. The stand-in follows the documented contract (endpoints, fields,
status codes, 401 on a bad token, 429 past 40 requests a minute) and records what the role sent.

Checked: create, a second run that changes nothing, update on a changed time, hour 0 and minute 0
sent as the number 0, the token never in the output, delete on state absent, and that nothing
root-only (packages, logrotate in /etc, runuser) runs in this mode.
"""
import getpass
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.pythonanywhere_standin import RATE_LIMIT, StandInAPI

REPO_DIR = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_DIR / ".venv"
TOKEN = "pa-token-3b1f9c27e0d84a5c"
USERNAME = "lcaimaths"
ROOT_ONLY_TASKS = ["Install cron and logrotate", "Start the cron daemon", "Add the logrotate entry",
                   "Check that the site user can run the virtualenv's python", "apt"]


@pytest.fixture
def api():
    with StandInAPI(USERNAME, TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def site(tmp_path):
    (tmp_path / "scripts").mkdir()
    return tmp_path


def run_role(site, api, token=TOKEN, **overrides):
    variables = {
        "ansible_python_interpreter": str(VENV_DIR / "bin/python"),
        "nightly_logout_scheduler": "pythonanywhere",
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_venv_dir": str(VENV_DIR),
        "nightly_logout_user": getpass.getuser(),
        "nightly_logout_script_path": str(site / "scripts/daily_logout.sh"),
        "nightly_logout_log_dir": str(site / "logs"),
        "nightly_logout_pythonanywhere_username": USERNAME,
        "nightly_logout_pythonanywhere_token": token,
        "nightly_logout_pythonanywhere_api_url": api.url,
        **overrides,
    }
    (site / "vars.json").write_text(json.dumps(variables))
    playbook = site / "playbook.yml"
    playbook.write_text(json.dumps([{"name": "PythonAnywhere", "hosts": "localhost", "connection": "local",
                                     "gather_facts": False, "roles": ["nightly_logout"]}]))
    result = subprocess.run(
        [VENV_DIR / "bin/ansible-playbook", "-i", "localhost,", playbook, "-e", f"@{site / 'vars.json'}"],
        cwd=site, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_DIR / "ansible/roles"),
             "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false",
             "ANSIBLE_NOCOLOR": "1"},
    )
    output = result.stdout + result.stderr
    assert not token or token not in output, "the token leaked into the output"
    return result.returncode, output


def writes(api, since=0):
    return [(method, path, body) for method, path, body in api.requests[since:] if method != "GET"]


def recap_changed(output):
    return int(output.split("changed=")[-1].split()[0])


def test_create_then_nothing_then_update_then_delete(site, api):
    wanted_command = f"{site}/scripts/daily_logout.sh >> {site}/logs/daily_logout.log 2>&1"
    # Dublin's 02:00 is 01:00 UTC in summer, 02:00 in winter: hourly at minute 0, the guard picks the hour.
    code, output = run_role(site, api, nightly_logout_timezone="Europe/Dublin")
    assert code == 0, output
    [(method, _, body)] = writes(api)
    assert method == "POST"
    assert body["command"] == wanted_command and body["interval"] == "hourly"
    assert body["minute"] == 0 and type(body["minute"]) is int and "hour" not in body
    [task] = api.tasks.values()
    assert f"Warning: PythonAnywhere scheduled task {task['id']}" in output
    assert f"expires on {task['expiry']}" in output
    wrapper = (site / "scripts/daily_logout.sh").read_text()
    assert "--due-at 02:00 --timezone Europe/Dublin" in wrapper
    assert (site / "logs").is_dir()
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
    assert body["interval"] == "daily"
    assert body["hour"] == 0 and type(body["hour"]) is int and body["minute"] == 0
    assert api.tasks[task["id"]]["hour"] == 0 and len(api.tasks) == 1

    seen = len(api.requests)
    code, output = run_role(site, api, nightly_logout_hour=5, nightly_logout_minute=0)
    assert code == 0, output
    [(method, _, body)] = writes(api, seen)
    assert method == "PATCH" and body["hour"] == 5 and api.tasks[task["id"]]["hour"] == 5

    api.tasks[99] = {"id": 99, "command": "python3 other.py", "description": "", "enabled": True,
                     "interval": "daily", "hour": 3, "minute": 0, "expiry": "2030-01-01"}
    code, output = run_role(site, api, nightly_logout_state="absent")
    assert code == 0, output
    assert list(api.tasks) == [99], "only the task running the wrapper goes"
    assert not (site / "scripts/daily_logout.sh").exists()


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
    assert code != 0 and message in " ".join(output.split()), output
    assert api.requests == [] and not (site / "scripts/daily_logout.sh").exists()


def test_the_stand_in_answers_like_the_documented_api(api):
    """The stand-in itself: status codes the role relies on."""
    def call(method, path, body=None, token=TOKEN):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{api.url}{path}", data=data, method=method,
                                         headers={"Authorization": f"Token {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    base = f"/api/v0/user/{USERNAME}/schedule/"
    assert call("GET", base, token="nope") == 401
    assert call("GET", "/api/v0/user/someone_else/schedule/") == 403
    assert call("POST", base, {"command": "x", "interval": "daily", "minute": 0}) == 400  # no hour
    assert call("POST", base, {"command": "x", "interval": "daily", "hour": 0, "minute": 0}) == 201
    assert call("PATCH", f"{base}1/", {"hour": 24}) == 400
    assert call("GET", f"{base}2/") == 404
    assert call("DELETE", f"{base}1/") == 204
