"""The role's variables are declared once, in meta/argument_specs.yml: the README's variable table is generated
from it (scripts/role-variables.py) and defaults/main.yml must hold the same defaults."""

import re
import subprocess
import sys

import yaml

from tests.support import REPO_DIR

ROLE_DIR = REPO_DIR / "ansible/roles/nightly_logout"
GENERATOR = REPO_DIR / "scripts/role-variables.py"


def spec_options() -> dict:
    specs = yaml.safe_load((ROLE_DIR / "meta/argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def test_readme_variable_table_is_the_one_generated_from_argument_specs():
    """Names, types, defaults and descriptions: any difference fails, with the diff and the command to run."""
    result = subprocess.run([sys.executable, GENERATOR, "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generator_sees_a_changed_description(tmp_path):
    """--check compares descriptions, not only names: a README whose row says something else is caught."""
    readme = (ROLE_DIR / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `nightly_logout_hour` |"))
    assert "Hour (0-23)" in row
    changed = tmp_path / "README.md"
    changed.write_text(readme.replace(row, row.replace("Hour (0-23)", "Hour (1-24)")))
    result = subprocess.run([sys.executable, GENERATOR, "--check", "--readme", changed], capture_output=True, text=True)
    assert result.returncode == 1
    assert "-" + row.replace("Hour (0-23)", "Hour (1-24)") in result.stdout and "+" + row in result.stdout


def test_root_readme_links_to_the_role_readme_instead_of_copying_the_variables():
    root = (REPO_DIR / "README.md").read_text()
    assert "ansible/roles/nightly_logout/README.md#variables" in root
    assert [name for name in spec_options() if f"| `{name}` |" in root] == []


def test_every_variable_has_a_type_and_a_description():
    for name, option in spec_options().items():
        assert option.get("type"), name
        assert option.get("description"), name


def test_defaults_file_matches_argument_specs():
    defaults = yaml.safe_load((ROLE_DIR / "defaults/main.yml").read_text())
    options = spec_options()
    assert set(defaults) == {name for name, option in options.items() if not option.get("required")}
    for name, value in defaults.items():
        assert options[name]["default"] == value, name


def role_tasks():
    """(file name under tasks/, task) for every task of tasks/**/*.yml, blocks opened."""
    def walk(tasks):
        for task in tasks or []:
            yield task
            for key in ("block", "rescue", "always"):
                yield from walk(task.get(key))
    for path in sorted((ROLE_DIR / "tasks").rglob("*.yml")):
        for task in walk(yaml.safe_load(path.read_text())):
            yield str(path.relative_to(ROLE_DIR / "tasks")), task


def test_the_site_users_code_runs_through_the_one_run_as_prefix():
    """Root trusts nothing the site user controls: every command that starts the site's python or manage.py
    starts with nightly_logout_run_as (vars/main.yml), the one home of `runuser -u <user> --`."""
    assert "runuser" not in "".join(path.read_text() for path in (ROLE_DIR / "tasks").rglob("*.yml"))
    commands = [(name, task) for name, task in role_tasks() if "ansible.builtin.command" in task]
    site_code = [(name, task["name"], str(task["ansible.builtin.command"].get("argv")))
                 for name, task in commands
                 if "bin/python" in str(task["ansible.builtin.command"]) or "manage" in str(task)]
    assert len(site_code) >= 8, site_code
    prefixes = ("nightly_logout_run_as", "nightly_logout_manage_argv", "nightly_logout_schedule_set_argv")
    assert [(name, task) for name, task, argv in site_code if not argv.lstrip("{ ").startswith(prefixes)] == []


def test_files_outside_roots_folders_are_written_as_the_site_user():
    """A file, template or copy task whose path is not root's (/etc: logrotate, systemd; systemd's timer stamps)
    switches to the site user, or to root only where tasks/validate/paths_and_host.yml found the whole way to
    the path root's."""
    writes = [(name, task) for name, task in role_tasks()
              for module in ("ansible.builtin.file", "ansible.builtin.template", "ansible.builtin.copy")
              if module in task]
    assert len(writes) >= 10, writes
    roots = [(name, task["name"]) for name, task in writes
             if re.search(r"/etc/|logrotate_path|systemd_stamp_dir", str(task.get("ansible.builtin.template", task.get(
                 "ansible.builtin.file", task.get("ansible.builtin.copy")))) + str(task.get("loop", "")))]
    assert roots, "the logrotate entry is root's"
    switching = re.compile(r"^\{\{ nightly_logout_as_user\.(\w+) or omit \}\}$")
    wrong = [(name, task["name"], task.get("become"), task.get("become_user")) for name, task in writes
             if (name, task["name"]) not in roots
             and not (switching.match(str(task.get("become")))
                      and task.get("become_user") == "{{ nightly_logout_user if nightly_logout_as_user."
                                                     f"{switching.match(str(task.get('become')))[1]} else omit }}}}")]
    assert wrong == []
