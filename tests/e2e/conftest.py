"""The browser tests' fixtures: a throwaway OS user, the site as a real server process, headless
Chromium from Debian, and the role applied to this host with ansible-playbook, all cleaned up after;
and a screenshot folder per test file. What the tests call is in tests/support/ (site.py, browser.py,
role.py)."""
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.os_users import throwaway_user
from tests.support import REPO_DIR
from tests.support.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS
from tests.support.role import VENV_BIN, InstalledJob, apply_role, as_user
from tests.support.site import PASSWORD, Site, manage, served


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

    with served(env, workdir / "runserver.log") as url:
        yield Site(url=url, environment=environment)


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
    with served(env, folder / "runserver.log", "--insecure") as url:
        site = Site(url=url, environment=environment)
        site.add_user("student")
        yield site


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
