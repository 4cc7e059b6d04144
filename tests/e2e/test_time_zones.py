"""Each user's own time zone in a real browser (issue 15, part 3): a student whose browser is in
Asia/Tokyo and one whose browser is in Europe/Dublin log in through the form, and the login page's
script gives each their browser's zone. The per-user schedule is then recorded with HH:MM set to
Tokyo's next whole minute at least 25 s ahead (25-85 s of waiting, on conditions) and the schedule's
zone Europe/Dublin, so Dublin's HH:MM is hours away. At Tokyo's HH:MM the Tokyo student's countdown
lands on the login page with the reason while the Dublin student is still in; the hourly run
(`logout_all_users --scheduled`) then deletes the Tokyo student's other session and keeps the Dublin
one, storage looked at directly. Screenshots go to test-artifacts/e2e/time_zones/."""
import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

from tests.support.browser import assert_on_statistics_page, banner, log_in, session_key
from tests.support.site import stored

TOKYO, DUBLIN = "Asia/Tokyo", "Europe/Dublin"
LEAD = dt.timedelta(seconds=25)  # enough for recording the schedule and checking both tabs before it


def zones_in_storage(site, keys):
    """Each user's zone (UserTimeZone: in effect, pending) and the zone each session was stamped with
    at login, read from the database directly."""
    code = (
        "import json\n"
        "from django.contrib.sessions.models import Session\n"
        "from students.models import UserTimeZone\n"
        "from students.selection import ZONE_KEY\n"
        "users = {row.user.username: [row.zone, row.next_zone] for row in UserTimeZone.objects.all()}\n"
        f"sessions = {{s.pk: s.get_decoded().get(ZONE_KEY) for s in Session.objects.filter(pk__in={list(keys)!r})}}\n"
        "print(json.dumps({'users': users, 'sessions': sessions}))\n"
    )
    return json.loads(site.manage("shell", "-v", "0", "-c", code))


def time_zone_page(page, site):
    """The time-zone page, reached through the header's link: (its "Your time zone" line, whether it
    shows a pending change)."""
    page.click("text=Time zone")
    page.wait_for_load_state()
    assert page.url == f"{site.url}/accounts/time-zone/", page.url
    return page.inner_text("#current-zone"), page.locator("#pending-zone").count() > 0


def test_a_student_in_tokyo_is_logged_out_at_tokyos_time_while_one_in_dublin_is_not(browser, live_site, screenshot):
    site = live_site
    site.add_user("tokyo_student")
    site.add_user("dublin_student")

    # No schedule yet: the zone each browser sends at login takes effect at once.
    tokyo = log_in(browser, site, "tokyo_student", timezone_id=TOKYO)
    # The same student's second browser (a phone, say): once logged in it makes no request until
    # the hourly run has run, so only that run can have deleted its session.
    tokyo_phone = log_in(browser, site, "tokyo_student", timezone_id=TOKYO)
    dublin = log_in(browser, site, "dublin_student", timezone_id=DUBLIN)
    tokyo_key, phone_key, dublin_key = session_key(tokyo), session_key(tokyo_phone), session_key(dublin)
    phone_context = tokyo_phone.context
    tokyo_phone.close()
    for page, zone, name in ((tokyo, TOKYO, "tokyo"), (dublin, DUBLIN, "dublin")):
        assert time_zone_page(page, site) == (f"Your time zone: {zone}.", False)
        screenshot(page, f"1-{name}-student-time-zone-from-the-browser")
        page.go_back()
        assert_on_statistics_page(page, f"{name}_student")
    assert zones_in_storage(site, (tokyo_key, phone_key, dublin_key)) == {
        "users": {"tokyo_student": [TOKYO, ""], "dublin_student": [DUBLIN, ""]},
        "sessions": {tokyo_key: TOKYO, phone_key: TOKYO, dublin_key: DUBLIN},
    }

    # HH:MM is Tokyo's next whole minute at least LEAD ahead; in Dublin it comes hours later.
    instant = (dt.datetime.now(dt.UTC) + LEAD + dt.timedelta(seconds=59)).replace(second=0, microsecond=0)
    in_tokyo = instant.astimezone(ZoneInfo(TOKYO))
    at = f"{in_tokyo:%H:%M}"
    dublins = dt.datetime.combine(in_tokyo.date(), in_tokyo.time(), tzinfo=ZoneInfo(DUBLIN))
    shown = json.loads(site.manage("logout_schedule", "--set", at, "--timezone", DUBLIN, "--per-user-zones",
                                   "--warn-minutes", "5", "--json"))
    assert shown["changed"] and shown["schedule"]["per_user_zones"] and shown["schedule"]["warn_minutes"] == 5, shown
    assert shown["next_instant"] == dublins.astimezone(dt.UTC).isoformat(), shown  # the schedule's zone's

    # Recording logs nobody out on the spot. The Tokyo student is warned of Tokyo's HH:MM; the Dublin
    # student's page counts to Dublin's HH:MM and shows nothing yet.
    tokyo.reload()
    assert_on_statistics_page(tokyo, "tokyo_student")
    tokyo.wait_for_function("document.getElementById('logout-warning')?.dataset.deadline", timeout=30000)
    assert re.fullmatch(rf"You will be signed out at {at} \(in (\d+ min )?\d+ s\)\. Save your work\.",
                        banner(tokyo)), banner(tokyo)
    dublin.reload()
    assert_on_statistics_page(dublin, "dublin_student")
    assert not dublin.is_visible("#logout-warning"), banner(dublin)
    assert float(dublin.get_attribute("#logout-warning", "data-at")) == dublins.timestamp()
    assert dt.datetime.now(dt.UTC) < instant, f"the checks before {at} Tokyo time took longer than {LEAD}"
    screenshot(tokyo, "2-tokyo-student-warned-of-tokyos-time")
    screenshot(dublin, "3-dublin-student-no-warning")

    # Tokyo's HH:MM: the countdown at zero lands on the login page with the reason.
    left = (instant - dt.datetime.now(dt.UTC)).total_seconds()
    tokyo.wait_for_selector("#logout-reason", timeout=(max(left, 0) + 60) * 1000)
    assert dt.datetime.now(dt.UTC) >= instant, "the Tokyo student left before Tokyo's logout time"
    assert tokyo.title() == "Log in" and tokyo.url.startswith(f"{site.url}/accounts/login/?")
    assert tokyo.inner_text("#logout-reason") == f"You were signed out by the nightly logout at {at}."
    screenshot(tokyo, "4-tokyo-student-signed-out-at-tokyos-time")
    dublin.reload()
    assert_on_statistics_page(dublin, "dublin_student")
    screenshot(dublin, "5-dublin-student-still-in")

    # Storage directly: the clock cutoff ended the Tokyo tab's session; the phone's is left for the
    # hourly run, which stands for Tokyo alone and deletes it, keeping the Dublin student's.
    assert not stored(site, tokyo_key), "the Tokyo tab's session should be gone from storage"
    assert stored(site, phone_key) and stored(site, dublin_key)
    summary = json.loads(site.manage("logout_all_users", "--scheduled", "--json"))
    assert list(summary["zones"]) == [TOKYO] and summary["deleted_active"] == 1, summary
    assert dt.datetime.fromisoformat(summary["zones"][TOKYO]) == instant, summary
    assert not stored(site, phone_key), "the hourly run should have deleted the Tokyo phone's session"
    assert stored(site, dublin_key), "the hourly run should have kept the Dublin student's session"

    # The old cookies: Dublin's still gets the statistics page, the Tokyo phone's the login page.
    dublin.reload()
    assert_on_statistics_page(dublin, "dublin_student")
    screenshot(dublin, "6-dublin-student-in-after-the-hourly-run")
    phone = phone_context.new_page()
    phone.goto(f"{site.url}/")
    assert phone.title() == "Log in" and phone.url.startswith(f"{site.url}/accounts/login/")
    screenshot(phone, "7-tokyo-phone-out-after-the-hourly-run")
