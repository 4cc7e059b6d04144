"""The warning's switch is the role's (issue 15, part 1): `nightly_logout_warning` and
`nightly_logout_warning_minutes`, applied with ansible-playbook for a throwaway site user, are recorded
with the schedule in the site's database (`logout_schedule --warn-minutes`), a second run changes
nothing, and turning the warning off records that too. The shared fixtures of tests/e2e/conftest.py
give the user, the migrated site and the playbook run; the role is removed again afterwards."""
import json
import re

from tests.e2e.conftest import REPO_DIR, VENV_BIN, apply_role

RECAP = re.compile(r"ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0")


def recorded(site):
    return json.loads(site.manage("logout_schedule", "--show", "--json"))["schedule"]


def changes(result):
    return int(RECAP.search(result.stdout)[1])


def test_the_role_records_the_warning_with_the_schedule(workdir, os_user, site):
    variables = {
        "nightly_logout_state": "present",
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_venv_dir": str(VENV_BIN.parent),
        "nightly_logout_user": os_user,
        "nightly_logout_script_path": str(workdir / "bin" / "daily_logout.sh"),
        "nightly_logout_log_dir": str(workdir / "logs"),
        "nightly_logout_scheduler": "none",  # nothing scheduled: only the record matters here
        "nightly_logout_timezone": "Europe/Dublin",
        "nightly_logout_environment": site.environment,
        "nightly_logout_warning": True,
        "nightly_logout_warning_minutes": 20,
    }
    try:
        apply_role(workdir, variables)
        schedule = recorded(site)
        assert schedule["warn_minutes"] == 20 and schedule["times"] == ["02:00"], schedule
        assert changes(apply_role(workdir, variables)) == 0, "a second run changed something"
        apply_role(workdir, {**variables, "nightly_logout_warning": False})
        assert "warn_minutes" not in recorded(site), "turning the warning off was not recorded"
    finally:
        apply_role(workdir, {**variables, "nightly_logout_state": "absent", "nightly_logout_purge_logs": True})
    assert recorded(site) is None
