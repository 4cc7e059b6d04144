"""What the browser tests stand on: a throwaway OS user, the site as a real server process, headless
Chromium from Debian, and the role applied to this host with ansible-playbook, all cleaned up after;
and what they share: logging in through the form, looking at session storage directly, waiting on a
condition, and screenshots kept per test file."""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.os_users import throwaway_user
from tests.servers import free_port

REPO_DIR = Path(__file__).resolve().parents[2]
# The virtualenv running these tests is the one the site and Ansible run from.
VENV_BIN = Path(sys.executable).parent
ARTIFACTS_DIR = REPO_DIR / "test-artifacts" / "e2e"
# Debian's Chromium; Playwright never downloads a browser here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery-staple-42"
# The role's logrotate entry has one fixed path: this host's own (from ./setup.sh) is put back after.
def run(command, **kwargs):
    """Run a command, and on failure show what it printed (a bare CalledProcessError hides it)."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def workdir():
    """A temp folder every user can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="nightly-logout-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def os_user():
    """A throwaway site user, so root's crontab and any real site user stay untouched."""
    with throwaway_user("nle2e", "the browser test creates an OS user and applies the role") as name:
        yield name


def as_user(user, command):
    """Run a shell command as `user` with the bare environment cron gives a job."""
    home = Path("~" + user).expanduser()
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"LOGNAME={user}",
         "PATH=/usr/bin:/bin", "SHELL=/bin/sh", "/bin/sh", "-c", command],
        capture_output=True, text=True,
    )


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


@pytest.fixture(scope="module")
def site(workdir, os_user):
    """The site on its own SQLite database, served by `manage.py runserver` on 127.0.0.1.

    The database folder belongs to the site user: the nightly job runs as that user and SQLite
    writes its journal next to the database file."""
    db_dir = workdir / "db"
    db_dir.mkdir()
    environment = {
        "DATABASE_URL": f"sqlite:///{db_dir / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
    }
    env = {**os.environ, **environment, "DJANGO_SETTINGS_MODULE": "lcstats.settings",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", (
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_user('student', password='{PASSWORD}')\n"
        f"User.objects.create_user('teacher', password='{PASSWORD}', is_staff=True)\n"
    ))
    shutil.chown(db_dir, os_user, os_user)
    shutil.chown(db_dir / "db.sqlite3", os_user, os_user)

    port = free_port()
    log_path = workdir / "runserver.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/accounts/login/", server, log_path)
        yield Site(url=url, environment=environment)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def live_site(tmp_path_factory):
    """The site on its own SQLite database and file cache (so a schedule a command records is seen by
    the server at once), served by `runserver --insecure` on 127.0.0.1 (so the pages' scripts are
    served with DEBUG off), with the user "student". No OS user and no role: for the tests of what
    the site does by itself."""
    folder = tmp_path_factory.mktemp("live-site")
    environment = {
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "CACHE_URL": f"file:///{folder / 'cache'}",  # like sqlite:///: an absolute path after the third /
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    }
    env = {**os.environ, **environment, "DJANGO_SETTINGS_MODULE": "lcstats.settings"}
    manage(env, "migrate", "--noinput")
    port = free_port()
    log_path = folder / "runserver.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
            cwd=REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/accounts/login/", server, log_path)
        site = Site(url=url, environment=environment)
        site.add_user("student")
        yield site
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def screenshot(request):
    """Save a page as test-artifacts/e2e/<test file without "test_">/<name>.png, for a person to look
    at after the run. Each file empties only its own folder, so every file's screenshots are kept."""
    folder = ARTIFACTS_DIR / request.module.__name__.rpartition(".")[2].removeprefix("test_")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def save(page, name):
        page.screenshot(path=folder / f"{name}.png", full_page=True)

    return save


# --- what the tests do in the browser and look at in storage ----------------------------------------

def log_in(browser, site, username, **context_options):
    """A fresh browser profile (its own cookie jar; Playwright's new_context options, e.g.
    timezone_id) that logs in through the login form."""
    page = browser.new_context(**context_options).new_page()
    page.goto(f"{site.url}/")
    assert page.title() == "Log in", "an anonymous visitor should be sent to the login page"
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", site.password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert_on_statistics_page(page, username)
    return page


def assert_on_statistics_page(page, username):
    assert page.title() == "My statistics", f"expected the statistics page, got {page.title()!r} at {page.url}"
    assert page.inner_text("#username") == username


def session_key(page):
    return next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")


def stored(site, key):
    """Looked at in the site's session storage directly."""
    code = f"from django.contrib.sessions.models import Session; print(Session.objects.filter(pk={key!r}).exists())"
    return site.manage("shell", "-v", "0", "-c", code).strip() == "True"


def banner(page):
    """The warning banner's text (students/templates/students/logout_warning.html)."""
    return page.inner_text("#logout-warning").strip()


def wait_for(condition, what, timeout):
    """Poll `condition` every 0.1 s; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)


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


@pytest.fixture(scope="module")
def nightly_job(workdir, os_user, site):
    """The role installed for the throwaway user: wrapper and log in temp folders, staff kept.
    Removed again (state=absent) afterwards, and that removal is checked."""
    variables = {
        "nightly_logout_state": "present",
        "nightly_logout_project_dir": str(REPO_DIR),
        "nightly_logout_venv_dir": str(VENV_BIN.parent),
        "nightly_logout_user": os_user,
        "nightly_logout_script_path": str(workdir / "bin" / "daily_logout.sh"),
        "nightly_logout_log_dir": str(workdir / "logs"),
        "nightly_logout_keep_staff": True,
        "nightly_logout_environment": site.environment,
    }
    job = InstalledJob(user=os_user, script_path=workdir / "bin" / "daily_logout.sh",
                       log_path=workdir / "logs" / "daily_logout.log")
    reachable = as_user(os_user, f"test -r {REPO_DIR}/manage.py && test -x {VENV_BIN}/python")
    if reachable.returncode != 0:
        pytest.fail(f"user {os_user} cannot read {REPO_DIR}/manage.py or run {VENV_BIN}/python: the "
                    "checkout must be readable by other users and .venv built on /usr/bin/python3 "
                    "(as ./test.sh builds it), not on an interpreter inside root's home")
    # The role names the entry after the site user, so the host's own entry is never touched.
    logrotate_entry = Path(f"/etc/logrotate.d/nightly_logout_{os_user}")
    try:
        apply_role(workdir, variables)
        assert logrotate_entry.exists(), f"the role did not install {logrotate_entry}"
        yield job
    finally:
        apply_role(workdir, {**variables, "nightly_logout_state": "absent", "nightly_logout_purge_logs": True})
        assert not logrotate_entry.exists(), "state=absent left the logrotate entry behind"
        assert not job.script_path.exists(), "state=absent left the wrapper script behind"
        crontab = subprocess.run(["crontab", "-l", "-u", os_user], capture_output=True, text=True).stdout
        assert "nightly_logout" not in crontab, f"state=absent left a cron entry:\n{crontab}"
