""""Keep me signed in" in a real browser (issue 15, part 2): with the schedule recorded with
--keep-remembered, the login page offers the checkbox; one student ticks it, another does not; after
`logout_all_users --keep-remembered` the first is still on their page and their session is still in
storage, the second is on the login page and their session is gone. Screenshots under
test-artifacts/e2e/remember_me/."""
import time

from tests.support.browser import assert_on_statistics_page, session_key
from tests.support.site import stored

CHECKBOX = "input[name=remember]"


def offered_login_page(browser, site, timeout=60):
    """A fresh browser profile on the login page once it offers the checkbox (the site process reads
    the newly recorded schedule within its cache's few seconds: waited for, not slept through)."""
    page = browser.new_context().new_page()
    deadline = time.monotonic() + timeout
    while True:
        page.goto(f"{site.url}/accounts/login/")
        if page.locator(CHECKBOX).count():
            return page
        assert time.monotonic() < deadline, "the login page never offered \"Keep me signed in\""
        page.wait_for_timeout(500)


def log_in(page, site, username, remember):
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", site.password)
    if remember:
        page.check(CHECKBOX)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert_on_statistics_page(page, username)
    return page


def test_a_remembered_student_stays_in_after_the_purge_while_another_is_out(browser, site, screenshot):
    site.add_user("student2")
    site.manage("logout_schedule", "--set", "02:00", "--timezone", "UTC", "--keep-remembered")

    remembered_page = offered_login_page(browser, site)
    assert "Keep me signed in" in remembered_page.inner_text("form")
    screenshot(remembered_page, "remember-1-login-page-with-checkbox")
    remembered = log_in(remembered_page, site, "student", remember=True)
    other = log_in(offered_login_page(browser, site), site, "student2", remember=False)
    remembered_key, other_key = session_key(remembered), session_key(other)

    out = site.manage("logout_all_users", "--keep-remembered")
    assert "Successfully logged out all users by deleting 1 session(s)" in out, out
    assert "Kept 1 session(s) (remembered sessions)" in out, out
    # Storage first, before a request could let the cutoff middleware hide a purge that missed it.
    assert stored(site, remembered_key) and not stored(site, other_key)

    remembered.reload()
    assert_on_statistics_page(remembered, "student")
    screenshot(remembered, "remember-2-remembered-student-still-in")
    other.reload()
    assert other.title() == "Log in" and other.url.startswith(f"{site.url}/accounts/login/")
    screenshot(other, "remember-3-other-student-out")
