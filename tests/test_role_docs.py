"""The role's variables are declared once, in meta/argument_specs.yml: the README's table and
defaults/main.yml must say the same names and defaults."""

import json
import re
from pathlib import Path

import yaml

ROLE_DIR = Path(__file__).resolve().parent.parent / "ansible/roles/nightly_logout"
# A README table row: | `nightly_logout_x` | `default` or required | description |
ROW = re.compile(r"^\| `(nightly_logout_\w+)` \| (.+?) \| (.+) \|$")


def spec_options() -> dict:
    specs = yaml.safe_load((ROLE_DIR / "meta/argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def readme_rows() -> dict:
    rows = {}
    for line in (ROLE_DIR / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match[1]] = (match[2], match[3])
    return rows


def shown_default(option: dict) -> str:
    """How the README shows a default: the YAML/JSON value in backticks, or 'required'."""
    if option.get("required"):
        return "required"
    default = option["default"]
    return f"`{default}`" if isinstance(default, str) and default else f"`{json.dumps(default)}`"


def test_readme_lists_every_variable_of_argument_specs_in_order():
    assert list(readme_rows()) == list(spec_options())


def test_readme_defaults_match_argument_specs():
    rows = readme_rows()
    for name, option in spec_options().items():
        assert rows[name][0] == shown_default(option), name


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
    """(file name, task) for every task of tasks/*.yml, blocks opened."""
    def walk(tasks):
        for task in tasks or []:
            yield task
            for key in ("block", "rescue", "always"):
                yield from walk(task.get(key))
    for path in sorted((ROLE_DIR / "tasks").glob("*.yml")):
        for task in walk(yaml.safe_load(path.read_text())):
            yield path.name, task


def test_the_site_users_code_runs_through_the_one_run_as_prefix():
    """Root trusts nothing the site user controls: every command that starts the site's python or manage.py
    starts with nightly_logout_run_as (vars/main.yml), the one home of `runuser -u <user> --`."""
    assert "runuser" not in "".join(path.read_text() for path in (ROLE_DIR / "tasks").glob("*.yml"))
    commands = [(name, task) for name, task in role_tasks() if "ansible.builtin.command" in task]
    site_code = [(name, task["name"], str(task["ansible.builtin.command"].get("argv")))
                 for name, task in commands
                 if "bin/python" in str(task["ansible.builtin.command"]) or "manage" in str(task)]
    assert len(site_code) >= 8, site_code
    prefixes = ("nightly_logout_run_as", "nightly_logout_manage_argv", "nightly_logout_schedule_set_argv")
    assert [(name, task) for name, task, argv in site_code if not argv.lstrip("{ ").startswith(prefixes)] == []


def test_files_outside_roots_folders_are_written_as_the_site_user():
    """A file, template or copy task whose path is not root's (/etc: logrotate, systemd; systemd's timer stamps)
    switches to the site user, or to root only where tasks/validate.yml found the whole way to the path root's."""
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
