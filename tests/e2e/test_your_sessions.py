""""Your sessions" in a real browser (issue 22): the same student signed in from two browser profiles
(one says it is Firefox on Windows, the other Safari on an iPhone) sees both on the page, this one
marked; "Sign out my other sessions" deletes the other one from storage, its old cookie gets the login
page, and this one stays signed in. Screenshots under test-artifacts/e2e/your_sessions/."""
from tests.support.browser import assert_on_statistics_page, log_in, session_key
from tests.support.site import stored

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")


def test_sign_out_my_other_sessions_ends_the_other_browser_and_keeps_this_one(browser, live_site, screenshot):
    here = log_in(browser, live_site, "student", user_agent=FIREFOX)
    phone = log_in(browser, live_site, "student", user_agent=IPHONE)
    here_key, phone_key = session_key(here), session_key(phone)

    here.click("text=Your sessions")  # linked from the header of every signed-in page
    assert here.title() == "Your sessions"
    rows = here.locator("#sessions tbody tr")
    assert rows.count() == 2
    assert "Firefox on Windows" in rows.nth(0).inner_text() and "This session" in rows.nth(0).inner_text()
    assert "Safari on iPhone" in rows.nth(1).inner_text() and "This session" not in rows.nth(1).inner_text()
    screenshot(here, "sessions-1-before")

    here.click("text=Sign out my other sessions")
    here.wait_for_load_state()
    assert "Signed out your other sessions" in here.inner_text("#sessions-message")
    assert here.locator("#sessions tbody tr").count() == 1
    screenshot(here, "sessions-2-after")
    # Storage first, before a request could let the cutoff middleware hide a deletion that missed it.
    assert not stored(live_site, phone_key) and stored(live_site, here_key)

    phone.reload()
    assert phone.title() == "Log in" and phone.url.startswith(f"{live_site.url}/accounts/login/")
    screenshot(phone, "sessions-3-other-browser-out")
    here.goto(f"{live_site.url}/")
    assert_on_statistics_page(here, "student")
