"""The model query methods every reader of runs and of the schedule goes through (students.models)."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from students.models import LogoutRun, LogoutSchedule

pytestmark = pytest.mark.django_db

T = datetime(2027, 6, 1, 2, 0, tzinfo=dt_timezone.utc)


def run(name, started_at, outcome=LogoutRun.Outcome.SUCCESS, **fields):
    return LogoutRun.objects.create(started_at=started_at, host=name, engine="db", outcome=outcome, **fields)


def test_successful_site_wide_runs_latest_cutoff_first():
    run("failed", T + timedelta(hours=5), LogoutRun.Outcome.FAILED)
    run("running", T + timedelta(hours=6), LogoutRun.Outcome.RUNNING)
    run("zone", T + timedelta(hours=4), zones={"Europe/Dublin": T.isoformat()})
    run("manual", T + timedelta(hours=1))
    # Started last but late: it stands for an instant before the manual run's start.
    run("late", T + timedelta(hours=3), stands_for=T)
    run("early", T - timedelta(days=1))
    successful = LogoutRun.objects.successful()
    assert {r.host for r in successful} == {"zone", "manual", "late", "early"}
    assert [r.host for r in successful.site_wide().latest_cutoff_first()] == ["manual", "late", "early"]


def test_current_is_the_one_schedule_row():
    assert LogoutSchedule.objects.current().first() is None
    LogoutSchedule.objects.create(pk=LogoutSchedule.ROW_PK + 1, times=["02:00"], recorded_at=T)
    assert LogoutSchedule.objects.current().first() is None
    LogoutSchedule.objects.create(pk=LogoutSchedule.ROW_PK, times=["03:00"], recorded_at=T)
    assert LogoutSchedule.objects.current().update(last_fired_at=T) == 1
    assert LogoutSchedule.objects.current().values_list("times", "last_fired_at").get() == (["03:00"], T)
