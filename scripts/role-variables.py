#!/usr/bin/env python3
"""Render the role README's variable table from meta/argument_specs.yml, the one declaration of the role's
variables (names, types, defaults, choices, descriptions), between the README's two markers.

    .venv/bin/python scripts/role-variables.py           # rewrite the table in the README
    .venv/bin/python scripts/role-variables.py --check   # exit 1, with a diff, when the README differs

tests/test_role_docs.py runs --check, so an edit of argument_specs without this script fails the tests.
"""
import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import yaml

ROLE_DIR = Path(__file__).resolve().parent.parent / "ansible/roles/nightly_logout"
SPECS = ROLE_DIR / "meta/argument_specs.yml"
README = ROLE_DIR / "README.md"
BEGIN = "<!-- BEGIN role variables: generated from meta/argument_specs.yml by scripts/role-variables.py -->"
END = "<!-- END role variables -->"


def markdown(text: str) -> str:
    """argument_specs' markup (C(code), I(option)) as Markdown, on one line (a table cell)."""
    text = " ".join(str(text).split())
    text = re.sub(r"\b[CI]\(([^()]*(?:\([^()]*\)[^()]*)*)\)", r"`\1`", text)
    return text.replace("|", "\\|")


def shown_default(option: dict) -> str:
    if option.get("required"):
        return "required"
    default = option.get("default")
    return f"`{default}`" if isinstance(default, str) and default else f"`{json.dumps(default)}`"


def shown_type(option: dict) -> str:
    kind = option["type"]
    if option.get("elements"):
        kind += f" of {option['elements']}"
    if option.get("choices"):
        kind += ": " + ", ".join(f"`{choice}`" for choice in option["choices"])
    return kind


def description(option: dict) -> str:
    parts = option["description"]
    text = " ".join(markdown(part) for part in (parts if isinstance(parts, list) else [parts]))
    for name, sub in option.get("options", {}).items():
        given = "required" if sub.get("required") else f"default {shown_default(sub)}"
        text += f" Each item's `{name}` ({shown_type(sub)}, {given}): {description(sub)}"
    return text


def table(specs: dict) -> str:
    lines = ["| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for name, option in specs["argument_specs"]["main"]["options"].items():
        lines.append(f"| `{name}` | {shown_type(option)} | {shown_default(option)} | {description(option)} |")
    return "\n".join(lines)


def rendered(readme: str, specs: dict) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        sys.exit(f"the README needs exactly one {BEGIN!r} and one {END!r} line")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(specs)}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the README differs")
    parser.add_argument("--readme", type=Path, default=README, help="the README to check or rewrite (default: %(default)s)")
    options = parser.parse_args()
    path = options.readme
    readme = path.read_text()
    wanted = rendered(readme, yaml.safe_load(SPECS.read_text()))
    if wanted == readme:
        return 0
    if options.check:
        sys.stdout.writelines(difflib.unified_diff(readme.splitlines(True), wanted.splitlines(True),
                                                   f"{path.name} (now)", f"{path.name} (from {SPECS.name})"))
        print(f"{path} differs from {SPECS}: run scripts/role-variables.py", file=sys.stderr)
        return 1
    path.write_text(wanted)
    print(f"rewrote the variable table of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
