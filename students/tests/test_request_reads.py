"""What a request read lives on the request (issue 21): the warning banner of a page shows the
schedule the cutoff middleware read for that page, even when the schedule changes and other requests
read the new one while it is being served. Run on Django's threaded live server, through real HTTP
and the real login form."""
import re
import threading
import urllib.parse
import urllib.request
from datetime import timedelta
from http.cookiejar import CookieJar

import pytest
from django.utils import timezone

from students.tests import held_urls
from students.tests.helpers import PASSWORD, command

BANNER = re.compile(r'<div id="logout-warning"[^>]*>\s*(.*?)\s*</div>', re.S)


class Browser:
    """One person's browser: its own cookies, signed in through the login form."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path):
        with self.opener.open(self.base_url + path, timeout=60) as answer:
            return answer.read().decode()

    def sign_in(self, username):
        form = self.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD})
        request = urllib.request.Request(self.base_url + "/accounts/login/", data=data.encode(),
                                         headers={"Referer": self.base_url + "/accounts/login/"})
        with self.opener.open(request, timeout=60) as answer:
            assert f'Signed in as <span id="username">{username}</span>' in answer.read().decode()


def banner(page):
    found = BANNER.search(page)
    return re.sub(r"<[^>]+>", "", found[1]) if found else ""


def record_schedule(at):
    """Record a schedule whose one logout time is `at` (UTC), with the banner shown all day long."""
    status, out = command("logout_schedule", "--set", f"{at:%H:%M}", "--timezone", "UTC", "--warn-minutes", "720")
    assert status == 0, out


@pytest.mark.django_db(transaction=True)
def test_a_page_shows_the_schedule_its_own_request_read_while_others_read_a_new_one(
        live_server, settings, django_user_model):
    settings.ROOT_URLCONF = "students.tests.held_urls"
    for name in ("alice", "bob"):
        django_user_model.objects.create_user(name, password=PASSWORD)
    now = timezone.now()
    first, second = now + timedelta(hours=2), now + timedelta(hours=4)
    record_schedule(first)
    alice, bob = Browser(live_server.url), Browser(live_server.url)
    alice.sign_in("alice")
    bob.sign_in("bob")
    held_urls.entered.clear()
    held_urls.release.clear()

    pages = {}
    held = threading.Thread(target=lambda: pages.setdefault("alice", alice.get("/held/")))
    held.start()
    try:
        assert held_urls.entered.wait(60), "the held page never started"
        # While alice's page is being served, the schedule changes and bob's page reads the new one.
        record_schedule(second)
        pages["bob"] = bob.get("/")
    finally:
        held_urls.release.set()
        held.join(60)

    assert banner(pages["bob"]).startswith(f"You will be signed out at {second:%H:%M} ")
    assert banner(pages["alice"]).startswith(f"You will be signed out at {first:%H:%M} "), banner(pages["alice"])
