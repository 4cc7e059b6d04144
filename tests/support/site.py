"""The site as the browser tests run it: `manage.py runserver` on 127.0.0.1 on its own database (the
`site` and `live_site` fixtures of tests/e2e/conftest.py start it), its users' password, its manage.py,
and its session storage looked at directly."""
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.support import REPO_DIR, run
from tests.support.servers import free_port

PASSWORD = "correct-horse-battery-staple-42"


@dataclass
class Site:
    url: str
    environment: dict  # what the site and the nightly job need to reach the same database
    password: str = PASSWORD  # of every user the fixtures and add_user create

    def manage(self, *args):
        """manage.py with the site's settings (the database the server uses); returns its stdout."""
        return manage({**os.environ, **self.environment, "DJANGO_SETTINGS_MODULE": "lcstats.settings"}, *args).stdout

    def add_user(self, username):
        self.manage("shell", "-c", "from django.contrib.auth.models import User\n"
                    f"User.objects.create_user({username!r}, password={self.password!r})")


def manage(env, *args):
    return run([sys.executable, "manage.py", *args], cwd=REPO_DIR, env=env)


@contextmanager
def served(env, log_path, *options):
    """`manage.py runserver --noreload` (plus `options`) on a free port of 127.0.0.1 with `env`, its
    output in `log_path`; yields its URL once the login page answers, and stops it afterwards."""
    port = free_port()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", *options, f"127.0.0.1:{port}"],
            cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/accounts/login/", server, log_path)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_until_up(url, server, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"runserver exited {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"runserver did not answer {url} within {timeout}s:\n{log_path.read_text()}")


def stored(site, key):
    """Looked at in the site's session storage directly."""
    code = f"from django.contrib.sessions.models import Session; print(Session.objects.filter(pk={key!r}).exists())"
    return site.manage("shell", "-v", "0", "-c", code).strip() == "True"
