"""Helpers and fixtures the tests under tests/ share (imported by name; not tests themselves), and what
every one of them stands on: the checkout and running a command whose output a failure shows."""
import subprocess
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]


def run(command, **kwargs):
    """Run a command, and on failure show what it printed (a bare CalledProcessError hides it)."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result
