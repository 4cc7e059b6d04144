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
