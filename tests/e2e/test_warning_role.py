"""The warning's switch is the role's (issue 15, part 1): `nightly_logout_warning` and
`nightly_logout_warning_minutes`, applied with ansible-playbook for a throwaway site user, are recorded
with the schedule in the site's database (`logout_schedule --warn-minutes`), a second run changes
nothing, and turning the warning off records that too. The fixtures of tests/e2e/conftest.py give the
user, the migrated site, the role applied with its defaults, and its removal afterwards."""
import json
import re

from tests.support.role import apply_role

RECAP = re.compile(r"ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0")


def recorded(site):
    return json.loads(site.manage("logout_schedule", "--show", "--json"))["schedule"]


def changes(result):
    return int(RECAP.search(result.stdout)[1])


def test_the_role_records_the_warning_with_the_schedule(workdir, site, nightly_job):
    # The variables the nightly_job fixture applied the role with (apply_role keeps them in this file);
    # that fixture also removes the role afterwards and checks the removal.
    base = json.loads((workdir / "vars-present.json").read_text())
    assert "warn_minutes" not in recorded(site), "the warning is off by default"
    variables = {**base, "nightly_logout_warning": True, "nightly_logout_warning_minutes": 20}
    apply_role(workdir, variables)
    schedule = recorded(site)
    assert schedule["warn_minutes"] == 20 and schedule["times"] == ["02:00"], schedule
    assert changes(apply_role(workdir, variables)) == 0, "a second run changed something"
    apply_role(workdir, {**variables, "nightly_logout_warning": False})
    assert "warn_minutes" not in recorded(site), "turning the warning off was not recorded"
