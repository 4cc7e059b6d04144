"""The warning before the logout in a real browser (issue 15, part 1): two tabs of one signed-in
student show the banner with a live countdown and agree on it; a tab with JavaScript off shows the
server's text; at zero both tabs land on the login page with the reason, and the session is gone
from storage; a page that slept through its logout time catches up when it wakes. The schedule is set
just ahead (30-90 s) on the live_site fixture's server (`runserver --insecure`, so the banner's script
is served with DEBUG off). Every wait is on a condition, with generous timeouts; screenshots go to
test-artifacts/e2e/warning_banner/."""
import datetime as dt
import json
import re
import time

from tests.support.browser import banner, wait_for
from tests.support.site import PASSWORD, stored

COUNTDOWN = r"You will be signed out at {at} \(in (\d+ min )?\d+ s\)\. Save your work\."


def log_in(context, url, page=None):
    page = page or context.new_page()
    page.goto(f"{url}/")
    page.fill("input[name=username]", "student")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.title() == "My statistics", f"login failed: {page.title()!r} at {page.url}"
    return page


def test_two_tabs_count_down_together_and_land_on_the_login_page_with_the_reason(browser, live_site, screenshot):
    url, manage_py = live_site.url, live_site.manage
    context = browser.new_context()
    first = log_in(context, url)
    second = context.new_page()                       # a second tab of the same browser
    second.goto(f"{url}/")
    no_js = log_in(browser.new_context(java_script_enabled=False), url)
    # A third browser whose page will sleep: its timers and monotonic clock stop, as in a machine's sleep.
    sleeper_page = browser.new_context().new_page()
    sleeper_page.clock.install()
    sleeper = log_in(None, url, sleeper_page)
    session_key = next(c["value"] for c in context.cookies() if c["name"] == "sessionid")

    # The next whole minute at least 30 s ahead: what the banner counts down to.
    instant = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30 + 59)).replace(second=0, microsecond=0)
    shown = json.loads(manage_py("logout_schedule", "--set", f"{instant:%H:%M}", "--timezone", "UTC",
                                 "--warn-minutes", "5", "--scheduler", "none", "--json"))
    assert shown["next_instant"] == instant.isoformat() and shown["schedule"]["warn_minutes"] == 5, shown
    at = f"{instant:%H:%M}"

    sleeper.reload()
    sleeper.wait_for_function("document.getElementById('logout-warning')?.dataset.deadline", timeout=30000)
    # Asleep from two seconds ahead of the page's clock: that clock runs on while the call travels, and a
    # pause in its past is refused ("Cannot fast-forward to the past"; CI took longer than 1 ms). In
    # seconds: Playwright for Python reads seconds here, and milliseconds jumped to a far future.
    sleeper.clock.pause_at(sleeper.evaluate("Date.now()") / 1000 + 2)
    asleep_for = (instant - dt.datetime.now(dt.UTC)).total_seconds()  # what its countdown still shows
    assert asleep_for > 12, "too little time left to tell catching up from counting on"

    no_js.reload()                                    # the server's own text, no countdown
    assert re.fullmatch(rf"You will be signed out at {at} \(in (1 minute|2 minutes)\)\. Save your work\.",
                        banner(no_js)), banner(no_js)
    screenshot(no_js, "1-banner-without-javascript")
    for page in (first, second):
        page.reload()
        page.wait_for_function("document.getElementById('logout-warning')?.dataset.deadline", timeout=30000)
        assert re.fullmatch(COUNTDOWN.format(at=at), banner(page)), banner(page)

    # The tabs agree: one deadline (the earliest), so the same seconds on both.
    wait_for(lambda: first.get_attribute("#logout-warning", "data-deadline")
             == second.get_attribute("#logout-warning", "data-deadline"), "the two tabs to agree", 30)
    shown_first = banner(first)
    wait_for(lambda: banner(first) != shown_first, "the countdown to move", 30)
    screenshot(first, "2-first-tab-counting-down")
    screenshot(second, "3-second-tab-counting-down")

    # At zero both tabs ask the server and land on the login page with the reason.
    left = (instant - dt.datetime.now(dt.UTC)).total_seconds()
    reason = f"You were signed out by the nightly logout at {at}."
    for page in (first, second):
        page.wait_for_selector("#logout-reason", timeout=(max(left, 0) + 90) * 1000)
        assert page.title() == "Log in" and page.url.startswith(f"{url}/accounts/login/?")
        assert page.inner_text("#logout-reason") == reason
    assert dt.datetime.now(dt.UTC) >= instant, "a tab left before the logout time"
    screenshot(first, "4-first-tab-signed-out-with-the-reason")
    screenshot(second, "5-second-tab-signed-out-with-the-reason")

    # Storage itself: the session is gone; the page without JavaScript gets the login page too.
    assert not stored(live_site, session_key)
    no_js.reload()
    assert no_js.title() == "Log in"

    # The sleeping page wakes after its logout time: it asks the server at once instead of counting
    # down the seconds it still shows (or below zero), and lands on the login page with the reason.
    assert dt.datetime.now(dt.UTC) > instant and sleeper.title() == "My statistics"
    sleeper.clock.resume()
    woke = time.monotonic()
    sleeper.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the tab is shown again
    sleeper.wait_for_selector("#logout-reason", timeout=120000)
    # Counting on would take asleep_for seconds at least; catching up takes one request.
    assert time.monotonic() - woke < asleep_for - 3, "the woken tab counted on instead of catching up"
    assert sleeper.inner_text("#logout-reason") == reason
    screenshot(sleeper, "6-tab-that-slept-signed-out-with-the-reason")
    context.close()
