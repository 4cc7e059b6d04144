"""Where the role finds the site's virtualenv when nightly_logout_venv_dir is empty: the role's own
tasks/validate/find_venv.yml, the one home of that rule for both states, run by real Ansible (validate/paths_and_host.yml in check
mode; the whole role for state absent) against a throwaway site user whose home holds the project and, PythonAnywhere-style, ~/.virtualenvs/<name>. A working virtualenv is a link to this
checkout's .venv (it imports django); a broken one is a python that cannot import django."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.os_users import throwaway_user

REPO_DIR = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_DIR / ".venv"
PROJECT = "mysite"


@pytest.fixture(scope="module")
def site_user():
    with throwaway_user("nlvenv", "it creates an OS user and runs python as it") as name:
        yield name


@pytest.fixture
def home(site_user):
    """The user's home, emptied of the project and ~/.virtualenvs, with a project holding manage.py."""
    home = Path("~" + site_user).expanduser()
    for name in (PROJECT, ".virtualenvs"):
        shutil.rmtree(home / name, ignore_errors=True)
    (home / PROJECT).mkdir()
    (home / PROJECT / "manage.py").write_text("")
    return home


def working_venv(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(VENV_DIR)


def venv_without_django(path: Path):
    (path / "bin").mkdir(parents=True)
    (path / "bin/python").symlink_to("/usr/bin/python3")


def run_role(site_user, home, variables, tasks_from="main", check=False):
    """Run the role (or one of its task files) against the throwaway site; return (exit status, output)."""
    playbook = home.parent / f"{site_user}-play.json"
    playbook.write_text(json.dumps([{
        "name": "Run the role", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "The role", "ansible.builtin.include_role": {"name": "nightly_logout",
                                                                        "tasks_from": tasks_from}}],
    }]))
    variables = {"ansible_python_interpreter": str(VENV_DIR / "bin/python"),
                 "nightly_logout_user": site_user, "nightly_logout_project_dir": str(home / PROJECT), **variables}
    try:
        result = subprocess.run(
            [VENV_DIR / "bin/ansible-playbook", *(["--check"] if check else []), "-i", "localhost,", playbook,
             "-e", json.dumps(variables)],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_DIR / "ansible/roles"),
                 "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "1"},
        )
    finally:
        playbook.unlink()
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def find_venv(site_user, home):
    """Run the role's validate/paths_and_host.yml in check mode; return (exit status, output)."""
    return run_role(site_user, home, {}, tasks_from="validate/paths_and_host", check=True)


def chosen(output):
    return output.split("nightly_logout_venv_dir is empty: using the virtualenv ", 1)[1].split(" ", 1)[0]


def venv_after_a_dot_venv_without_django(home):
    venv_without_django(home / PROJECT / ".venv")
    working_venv(home / PROJECT / "venv")
    working_venv(home / ".virtualenvs" / PROJECT)  # comes after the project's own folders
    return f"{PROJECT}/venv"


def the_only_home_virtualenv(home):
    working_venv(home / ".virtualenvs" / "anything")
    return ".virtualenvs/anything"


def the_home_virtualenv_named_like_the_project(home):
    working_venv(home / ".virtualenvs" / "other")
    working_venv(home / ".virtualenvs" / PROJECT)
    return f".virtualenvs/{PROJECT}"


@pytest.mark.parametrize("layout", [venv_after_a_dot_venv_without_django, the_only_home_virtualenv,
                                    the_home_virtualenv_named_like_the_project])
def test_the_first_usable_virtualenv_is_found_and_named(site_user, home, layout):
    expected = home / layout(home)
    code, output = find_venv(site_user, home)
    assert code == 0, output
    assert chosen(output) == str(expected)


def test_several_home_virtualenvs_none_named_like_the_project_fail_listing_them(site_user, home):
    working_venv(home / ".virtualenvs" / "blog")
    working_venv(home / ".virtualenvs" / "shop")
    code, output = find_venv(site_user, home)
    assert code != 0
    assert (f"{home}/.virtualenvs/* (several, none named like the project folder \"{PROJECT}\": blog, shop). "
            "Set nightly_logout_venv_dir to the site's virtualenv.") in output, output


def test_no_usable_virtualenv_fails_listing_every_place(site_user, home):
    venv_without_django(home / PROJECT / "virtualenv")
    code, output = find_venv(site_user, home)
    assert code != 0
    project = f"{home}/{PROJECT}"
    assert (f'nightly_logout_venv_dir is "" and no virtualenv was found whose bin/python nightly_logout_user '
            f'"{site_user}" can run and import django from; looked in {project}/.venv (no bin/python), '
            f"{project}/venv (no bin/python), {project}/virtualenv (cannot import django), "
            f"{home}/.virtualenvs/* (none). Set nightly_logout_venv_dir to the site's virtualenv.") in output, output


def as_site_user(site_user, *argv, cwd=None):
    return subprocess.run(["runuser", "-u", site_user, "--", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "DJANGO_SETTINGS_MODULE": "lcstats.settings"})


def test_state_absent_finds_the_home_virtualenv_clears_the_schedule_and_every_schedulers_schedule(site_user, home):
    """PythonAnywhere-style: the venv only in ~/.virtualenvs. State absent with nightly_logout_scheduler systemd
    must still clear the schedule recorded in the site's database (else the site keeps logging users out every
    night) and remove a cron schedule an earlier run made; the user's own crontab line stays."""
    project = home / PROJECT
    shutil.rmtree(project)
    project.mkdir()
    shutil.copy(REPO_DIR / "manage.py", project)
    for package in ("lcstats", "students"):
        shutil.copytree(REPO_DIR / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chown", "-R", f"{site_user}:", project], check=True)
    working_venv(home / ".virtualenvs" / PROJECT)
    python = home / ".virtualenvs" / PROJECT / "bin/python"
    database = {"DATABASE_URL": f"sqlite:///{project}/db.sqlite3"}
    env_prefix = ["env", *(f"{key}={value}" for key, value in database.items())]
    manage = [*env_prefix, python, "-B", "manage.py"]
    for argv in (["migrate", "--noinput", "--verbosity", "0"],
                 ["logout_schedule", "--set", "02:00", "--timezone", "UTC", "--scheduler", "cron", "--json"]):
        result = as_site_user(site_user, *manage, *argv, cwd=project)
        assert result.returncode == 0, result.stderr
    hand_line = "15 3 * * * echo the owner's own job"
    crontab = f"{hand_line}\n#Ansible: nightly_logout\n0 2 * * * {project}/scripts/daily_logout.sh --scheduled\n"
    subprocess.run(["crontab", "-u", site_user, "-"], input=crontab, text=True, check=True)

    code, output = run_role(site_user, home, {"nightly_logout_state": "absent", "nightly_logout_scheduler": "systemd",
                                              "nightly_logout_environment": database})
    assert code == 0, output

    shown = as_site_user(site_user, *manage, "logout_schedule", "--show", "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["schedule"] is None, shown.stdout
    left = subprocess.run(["crontab", "-l", "-u", site_user], capture_output=True, text=True, check=True).stdout
    assert left.splitlines() == [hand_line], left
