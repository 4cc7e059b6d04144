"""Throwaway OS users for tests that run the role or the job as a site user other than root."""
import contextlib
import os
import secrets
import subprocess

import pytest


@contextlib.contextmanager
def throwaway_user(prefix, why):
    """Create a user with a home (name: prefix + random hex); remove it, its home and crontab after.
    `why` says, in the failure a run without root gets, what the test does that needs root."""
    if os.geteuid() != 0:
        pytest.fail(f"this test needs root: {why}")
    name = f"{prefix}{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-r", "-u", name], capture_output=True)  # never leave a crontab behind
        subprocess.run(["userdel", "--remove", name], capture_output=True)
