"""What the browser tests do in headless Chromium (Debian's; Playwright never downloads a browser
here) and look at on the page: logging in through the form, the session cookie, the warning banner,
waiting on a condition, and where screenshots are kept."""
import time

import pytest

from tests.support import REPO_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS_DIR = REPO_DIR / "test-artifacts" / "e2e"


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
