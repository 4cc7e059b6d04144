"""The admin as a superuser sees it: the run list at a glance, the index's overdue warning."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from students import health
from students.models import LogoutRun
from students.tests.helpers import pin_clock, record_schedule

pytestmark = pytest.mark.django_db

ENGINE_PATH = "django.contrib.sessions.backends.cached_db"


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("boss", password="a-long-test-password-42")


def signed_in(user):
    """A browser tab of `user`, signed in now (by the pinned clock, when a test pins it)."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_(superuser):
    return signed_in(superuser)


def columns(html):
    return re.findall(r'<th scope="col"\s+class="[^"]*column-(\w+)', html)


def test_run_list_shows_outcome_duration_and_counts_first(admin_client_):
    # Runs from yesterday: a successful run's start is a cutoff that would log out a later login.
    started = LogoutRun.objects.create(
        started_at=timezone.now() - timedelta(days=1), host="web1.example.org", engine=ENGINE_PATH, outcome="success",
        deleted_active=1234, deleted_expired=56, kept_sessions=7)
    started.finished_at = started.started_at + timedelta(seconds=125)
    started.save()
    response = admin_client_.get("/admin/students/logoutrun/")
    html = response.content.decode()
    assert response.status_code == 200
    assert columns(html) == ["started_at", "outcome", "duration", "deleted", "expired", "kept", "engine_kind",
                             "host"]
    assert '<td class="field-duration">2\u00a0min\u00a005\u00a0s</td>' in html
    assert ('<td class="field-deleted">1234</td><td class="field-expired">56</td><td class="field-kept">7</td>'
            in html)
    assert '<td class="field-engine_kind">cached_db</td>' in html
    table = html[html.index('<table id="result_list">'):html.index("</table>")]
    assert ENGINE_PATH not in table  # the list shows the kind only ...
    detail = admin_client_.get(f"/admin/students/logoutrun/{started.pk}/change/").content.decode()
    assert ENGINE_PATH in detail  # ... the detail view the full path


def test_a_running_run_has_no_duration_yet(admin_client_):
    LogoutRun.objects.create(started_at=timezone.now() - timedelta(days=1), host="web1", engine=ENGINE_PATH)
    html = admin_client_.get("/admin/students/logoutrun/").content.decode()
    assert '<td class="field-duration">-</td>' in html


def test_index_warns_when_the_logout_is_overdue(superuser, monkeypatch):
    recorded = record_schedule(monkeypatch, "02:00", "Europe/Dublin", at="2026-11-30T10:00:00+00:00")
    due = recorded.recorded_at + recorded.period() + health.GRACE
    pin_clock(monkeypatch, due - timedelta(minutes=1))
    client = signed_in(superuser)  # after 02:00's clock cutoff, which ends earlier sessions
    html = client.get("/admin/").content.decode()
    assert "nightly-logout-overdue" not in html and "Logout runs" in html
    pin_clock(monkeypatch, due)
    html = client.get("/admin/").content.decode()
    assert 'id="nightly-logout-overdue"' in html
    assert (f"The nightly logout (scheduler cron) is overdue since {due:%Y-%m-%d %H:%M} UTC: "
            "a successful run is missing (none since the schedule was recorded).") in html
    assert 'href="/admin/students/logoutrun/"' in html


def test_index_without_a_schedule_has_no_warning(admin_client_):
    html = admin_client_.get("/admin/").content.decode()
    assert "nightly-logout-overdue" not in html and "Logout runs" in html
