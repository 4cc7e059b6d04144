"""The systemd backend's units, rendered by real Ansible from the role's templates with the run times the
role itself works out (tasks/validate/run_times.yml, i.e. students.schedule on this host's tzdata).

Here the verdict comes from systemd's own tools, which need no running manager (molecule/systemd applies
the role on a running systemd):
- `systemd-analyze verify` loads the units into a throw-away manager in test mode and reports every
  setting it cannot parse (it exits 0 on some of those, so any output at all counts as a failure);
- `systemd-analyze calendar --base-time=... --iterations=N` computes with systemd's calendar code when
  each OnCalendar= elapses. Those instants, fed through the rule a --scheduled run follows (students.due.due_at),
  must give exactly one run per local day over both 2027 Dublin DST changes.
With nightly_logout_per_user_zones the timer fires every hour at the minute instead.
The service is named per site user and hardened: `systemd-analyze security --offline=yes` scores the rendered
file as systemd would score the loaded unit.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from students.schedule import parse_due_at, target_instant
from students.tests.helpers import simulate
from tests.support import REPO_DIR

VENV_DIR = REPO_DIR / ".venv"
TEMPLATES = REPO_DIR / "ansible/roles/nightly_logout/templates"
# The units of the site user the tests render for (root: the user running the tests exists on every host).
UNIT = "nightly_logout_root"
UNITS = [f"{UNIT}.service", f"{UNIT}.timer"]

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze (Debian package systemd) is not installed")


def render_units(workdir, timezone, hour, minute, per_user_zones=False, **extra):
    """Run the role's own validate/run_times.yml, then template the two units, as systemd/schedule.yml does
    (public: the role's vars/main.yml names the units and the writable folders). `extra`: more role variables."""
    playbook = workdir / "render.yml"
    playbook.write_text(json.dumps([{
        "name": "Render the nightly_logout units", "hosts": "localhost", "connection": "local",
        "gather_facts": False,
        "tasks": [
            {"name": "Work out the run times",
             "ansible.builtin.include_role": {"name": "nightly_logout", "tasks_from": "validate/run_times",
                                              "public": True}},
            {"name": "Render the units",
             "ansible.builtin.template": {"src": f"{TEMPLATES}/nightly_logout.{{{{ item }}}}.j2",
                                          "dest": f"{workdir}/{{{{ nightly_logout_systemd_unit }}}}.{{{{ item }}}}",
                                          "mode": "0644"},
             "loop": ["service", "timer"]},
        ],
    }]))
    variables = {
        "ansible_python_interpreter": str(VENV_DIR / "bin/python"),
        "nightly_logout_project_dir": str(REPO_DIR), "nightly_logout_user": "root",
        "nightly_logout_resolved_group": "root", "nightly_logout_resolved_venv_dir": str(VENV_DIR),
        "nightly_logout_script_path": str(workdir / "daily_logout.sh"),
        "nightly_logout_log_path": str(workdir / "logs/daily logout.log"),
        "nightly_logout_resolved_log_dir": str(workdir / "logs"),
        "nightly_logout_lock_path": str(workdir / "lock/.daily_logout.lock"),
        "nightly_logout_timezone": timezone, "nightly_logout_hour": hour, "nightly_logout_minute": minute,
        "nightly_logout_per_user_zones": per_user_zones, **extra,
    }
    (workdir / "vars.json").write_text(json.dumps(variables))
    subprocess.run(
        [VENV_DIR / "bin/ansible-playbook", "-i", "localhost,", playbook, "-e", f"@{workdir / 'vars.json'}"],
        cwd=workdir, check=True, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_DIR / "ansible/roles"),
             "ANSIBLE_LOCALHOST_WARNING": "false"},
    )
    unit = f"nightly_logout_{variables['nightly_logout_user']}"
    return {name: (workdir / name) for name in (f"{unit}.service", f"{unit}.timer")}


def verify(units):
    result = subprocess.run(["systemd-analyze", "verify", *map(str, units.values())],
                            capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr).strip()


def on_calendar(timer):
    return re.findall(r"^OnCalendar=(.+)$", timer.read_text(), flags=re.M)


def elapses(spec, base, iterations):
    """When systemd fires OnCalendar=spec after `base`, from systemd's own calendar code."""
    result = subprocess.run(
        ["systemd-analyze", "calendar", f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC",
         f"--iterations={iterations}", spec],
        capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"},
    )
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", result.stdout)
    assert len(found) == iterations, result.stdout
    return [datetime.fromisoformat(text).replace(tzinfo=UTC) for text in found]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """render(timezone, hour, minute[, per_user_zones]) -> units, each configuration rendered once
    (ansible-playbook is slow)."""
    cache = {}

    def render(*configuration):
        if configuration not in cache:
            cache[configuration] = render_units(tmp_path_factory.mktemp("units"), *configuration)
        return cache[configuration]

    return render


@pytest.fixture
def dublin_gap_units(rendered):
    return rendered("Europe/Dublin", 1, 30)


def test_units_pass_systemd_analyze_verify(dublin_gap_units):
    assert verify(dublin_gap_units) == (0, "")
    service = dublin_gap_units[f"{UNIT}.service"].read_text()
    assert "Type=oneshot" in service and "User=root" in service
    timer = dublin_gap_units[f"{UNIT}.timer"].read_text()
    assert "Persistent=true" in timer and f"Unit={UNIT}.service" in timer


def test_verify_would_catch_a_broken_unit(dublin_gap_units, tmp_path):
    """The verdict can fail: a typo in the timer's zone makes systemd-analyze speak."""
    broken = {}
    for name, path in dublin_gap_units.items():
        broken[name] = tmp_path / name
        broken[name].write_text(path.read_text().replace("Europe/Dublin", "Europe/Dubln"))
    code, output = verify(broken)
    assert code != 0 and "Failed to parse calendar specification" in output


def test_the_timer_carries_the_zone_and_the_gap_end(dublin_gap_units):
    assert on_calendar(dublin_gap_units[f"{UNIT}.timer"]) == [
        "*-*-* 01:30:00 Europe/Dublin", "*-*-* 02:00:00 Europe/Dublin"]


@pytest.mark.parametrize("timezone, hour, minute", [
    ("Europe/Dublin", 1, 30), ("Europe/Dublin", 2, 0), ("Europe/Dublin", 0, 30), ("Asia/Kolkata", 2, 0)])
@pytest.mark.parametrize("first_day", [date(2027, 3, 27), date(2027, 10, 30)], ids=["spring", "autumn"])
def test_systemd_firings_run_once_each_local_day(rendered, timezone, hour, minute, first_day):
    units = rendered(timezone, hour, minute)
    assert verify(units) == (0, "")
    zone, due_at = ZoneInfo(timezone), parse_due_at(f"{hour:02d}:{minute:02d}")
    base = datetime.combine(first_day - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    firings = sorted({instant for spec in on_calendar(units[f"{UNIT}.timer"])
                      for instant in elapses(spec, base, iterations=6)})
    runs = simulate(firings, due_at, zone)
    local_days = [first_day + timedelta(days=n) for n in range(3)]
    per_day = Counter(run.astimezone(zone).date() for run in runs)
    for day in local_days:
        assert per_day[day] == 1, f"{day}: {per_day[day]} run(s); systemd fired at {firings}"
        [run] = [r for r in runs if r.astimezone(zone).date() == day]
        assert run == target_instant(day, due_at, zone), f"{day}: ran at {run}"


def test_without_a_timezone_the_timer_uses_the_host_clock(rendered):
    units = rendered("", 2, 0)
    assert verify(units) == (0, "")
    assert on_calendar(units[f"{UNIT}.timer"]) == ["*-*-* 02:00:00"]


@pytest.mark.parametrize("timezone", ["", "Europe/Dublin"], ids=["host-clock", "dublin"])
def test_per_user_zones_fire_the_timer_every_hour_at_the_minute(rendered, timezone):
    units = rendered(timezone, 2, 30, True)
    assert verify(units) == (0, "")
    [spec] = on_calendar(units[f"{UNIT}.timer"])
    assert spec == "*-*-* *:30:00"
    # systemd's own reading of it, across the Dublin spring change: every hour, at half past.
    firings = elapses(spec, datetime(2027, 3, 27, 22, 0, tzinfo=UTC), iterations=26)
    assert firings[0] == datetime(2027, 3, 27, 22, 30, tzinfo=UTC)
    assert {later - earlier for earlier, later in zip(firings, firings[1:])} == {timedelta(hours=1)}


def settings(unit_text):
    """The unit's Key=value lines as (key, value) pairs, in order (comments and sections left out)."""
    return re.findall(r"^([A-Za-z]+)=(.*)$", unit_text, flags=re.M)


def exposure(service):
    """systemd's own exposure score of the service file (0 safest, 10 most exposed)."""
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(service)],
                            capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes", "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes", "LockPersonality": "yes", "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
}


def test_the_service_is_hardened_and_runs_the_wrapper_as_the_site_user(tmp_path):
    units = render_units(
        tmp_path, "", 2, 0, nightly_logout_user="www-data", nightly_logout_resolved_group="www-data",
        nightly_logout_writable_paths=["/srv/site sessions/"],
        nightly_logout_environment={"SESSION_ENGINE": "file", "SESSION_FILE_PATH": "/var/lib/site/sessions"})
    assert sorted(path.name for path in units.values()) == ["nightly_logout_www-data.service",
                                                            "nightly_logout_www-data.timer"]
    assert verify(units) == (0, "")
    service = units["nightly_logout_www-data.service"]
    found = settings(service.read_text())
    values = dict(found)
    assert {key: values.get(key) for key in HARDENING} == HARDENING
    assert (values["User"], values["Group"]) == ("www-data", "www-data")
    # The wrapper, as the site user, with its output appended to the log.
    assert values["ExecStart"].startswith("/bin/bash -c ")
    assert shlex.split(values["ExecStart"])[3:] == [str(tmp_path / "daily_logout.sh"),
                                                    str(tmp_path / "logs/daily logout.log")]
    assert '"$$0" --scheduled' in values["ExecStart"]
    # Writable: the project (db.sqlite3), the log and lock folders, the file sessions, what the play adds.
    writable = [shlex.split(value) for key, value in found if key == "ReadWritePaths"]
    assert writable == [["-" + str(REPO_DIR)], ["-" + str(tmp_path / "logs")], ["-" + str(tmp_path / "lock")],
                        ["-/var/lib/site/sessions"], ["-/srv/site sessions"]]
    assert "Unit=nightly_logout_www-data.service" in units["nightly_logout_www-data.timer"].read_text()
    # Today's unit (4f9bacf, User= only) scores 9.2 here: "UNSAFE".
    assert exposure(service) <= 2.5


def test_with_mail_on_failure_the_mta_can_still_queue_the_mail(tmp_path):
    """exim4's sendmail is set-user-ID root and writes /var/spool/exim4: no NoNewPrivileges= there."""
    units = render_units(tmp_path, "", 2, 0, nightly_logout_user="www-data", nightly_logout_resolved_group="www-data",
                         nightly_logout_mail_on_failure=True)
    assert verify(units) == (0, "")
    values = dict(settings(units["nightly_logout_www-data.service"].read_text()))
    assert "NoNewPrivileges" not in values and "CapabilityBoundingSet" not in values
    assert "SystemCallFilter" not in values and "PrivateDevices" not in values
    assert (values["ProtectSystem"], values["ProtectHome"], values["PrivateTmp"]) == ("full", "read-only", "yes")


@pytest.mark.parametrize("variables, message", [
    ({"nightly_logout_user": "web@site"}, 'nightly_logout_user "web@site" cannot name the systemd units'),
    ({"nightly_logout_writable_paths": ["sessions"]},
     'nightly_logout_writable_paths[0] must be an absolute path without \'%\' or a newline; got "sessions"'),
    ({"nightly_logout_environment": {"SESSION_ENGINE": "file"}},
     'nightly_logout_environment has SESSION_ENGINE "file" and no SESSION_FILE_PATH'),
], ids=["user-name", "relative-path", "file-sessions-in-tmp"])
def test_what_systemd_cannot_take_is_refused_naming_the_variable(tmp_path, variables, message):
    result = validate_systemd(tmp_path, variables)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout


def test_a_plain_site_user_and_absolute_folders_pass(tmp_path):
    result = validate_systemd(tmp_path, {"nightly_logout_user": "lc.stats-2_b", "nightly_logout_writable_paths": ["/srv/x"],
                                         "nightly_logout_environment": {"SESSION_ENGINE": "db"}})
    assert result.returncode == 0, result.stdout
    result = validate_systemd(tmp_path, {"nightly_logout_environment": {}})
    assert result.returncode == 0, result.stdout


def validate_systemd(tmp_path, variables):
    """Run the role's tasks/validate/systemd.yml with the given role variables."""
    playbook = tmp_path / "validate.yml"
    playbook.write_text(json.dumps([{
        "name": "Validate", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "Check the systemd settings",
                   "ansible.builtin.include_role": {"name": "nightly_logout", "tasks_from": "validate/systemd"}}],
    }]))
    (tmp_path / "vars.json").write_text(json.dumps({
        "ansible_python_interpreter": str(VENV_DIR / "bin/python"), "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_user": "root", **variables}))
    result = subprocess.run(
        [VENV_DIR / "bin/ansible-playbook", "-i", "localhost,", playbook, "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_DIR / "ansible/roles"), "ANSIBLE_LOCALHOST_WARNING": "false",
             "ANSIBLE_NOCOLOR": "1"},
    )
    return result
