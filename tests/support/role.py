"""The role applied to this host the way ./setup.sh does (ansible/playbook.yml), for a throwaway site
user, and the job it installs, run as cron would run it (the `nightly_job` fixture of
tests/e2e/conftest.py)."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO_DIR, run

# The virtualenv running these tests is the one the site and Ansible run from.
VENV_BIN = Path(sys.executable).parent
# The role's tasks that need root: a run without it (PythonAnywhere, the play as the site user) skips them.
ROOT_ONLY_TASKS = ["Install the role's packages", "Start the cron daemon", "Add the logrotate entry",
                   "Check that the site user can run the virtualenv's python"]


def as_user(user, command):
    """Run a shell command as `user` with the bare environment cron gives a job."""
    home = Path("~" + user).expanduser()
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"LOGNAME={user}",
         "PATH=/usr/bin:/bin", "SHELL=/bin/sh", "/bin/sh", "-c", command],
        capture_output=True, text=True,
    )


@dataclass
class InstalledJob:
    user: str
    script_path: Path
    log_path: Path

    def crontab(self):
        return run(["crontab", "-l", "-u", self.user]).stdout

    def run_like_cron(self, command):
        return as_user(self.user, command)


def apply_role(workdir, variables):
    """Apply the role the way ./setup.sh does (ansible/playbook.yml), with these variables on top."""
    vars_file = workdir / f"vars-{variables['nightly_logout_state']}.json"
    vars_file.write_text(json.dumps(variables))
    return run([VENV_BIN / "ansible-playbook", "playbook.yml", "-e", f"@{vars_file}"],
               cwd=REPO_DIR / "ansible", env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
