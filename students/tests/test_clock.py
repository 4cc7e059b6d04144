"""The site knows its schedule: `logout_schedule`, students.schedule.Schedule's instants (daylight-saving days
included), and `logout_all_users --scheduled` standing for the latest scheduled instant."""
import json
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from students import clock, schedule_store
from students.models import LogoutRun, LogoutSchedule
from students.schedule import Schedule

DUBLIN = ZoneInfo("Europe/Dublin")


def schedule(*times, zone="Europe/Dublin", recorded_at=datetime(2020, 1, 1, tzinfo=UTC), **rules):
    return Schedule(times=tuple(time.fromisoformat(t) for t in times), timezone=zone,
                    recorded_at=recorded_at, **rules)


def at(monkeypatch, instant):
    """Pin Django's clock (timezone.now) for what follows in this test."""
    monkeypatch.setattr("django.utils.timezone.now", lambda: instant)


def schedule_command(*args):
    out = StringIO()
    call_command("logout_schedule", *args, stdout=out)
    return out.getvalue()


def schedule_json(*args):
    return json.loads(schedule_command(*args, "--json"))


# --- instants ------------------------------------------------------------------------------------

def test_latest_and_next_instant_on_an_ordinary_day():
    s = schedule("02:00", "14:30")
    now = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)  # 13:00 IST
    assert s.latest_instant(now) == datetime(2027, 6, 1, 1, 0, tzinfo=UTC)   # 02:00 IST
    assert s.next_instant(now) == datetime(2027, 6, 1, 13, 30, tzinfo=UTC)   # 14:30 IST
    exactly = datetime(2027, 6, 1, 1, 0, tzinfo=UTC)
    assert s.latest_instant(exactly) == exactly and s.next_instant(exactly) > exactly


def test_spring_forward_gap_happens_at_its_end_and_fall_back_counts_once():
    s = schedule("01:30")
    # Dublin 2027-03-28: 01:00 GMT jumps to 02:00 IST, so 01:30 does not exist: 02:00 IST = 01:00 UTC.
    assert s.latest_instant(datetime(2027, 3, 28, 12, tzinfo=UTC)) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    # 2027-10-31: 01:30 happens twice (IST, then GMT): the first, 00:30 UTC, only.
    assert s.latest_instant(datetime(2027, 10, 31, 12, tzinfo=UTC)) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    assert s.next_instant(datetime(2027, 10, 31, 0, 30, tzinfo=UTC)) == datetime(2027, 11, 1, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("times", [("01:30",), ("02:00",), ("00:00", "01:15", "23:59")])
def test_every_local_day_has_each_time_once_across_both_dst_changes(times):
    """Step from instant to next instant over both of 2027's changes: each local day has each time
    exactly once (no day doubled or missed), and latest_instant agrees at and just before each."""
    s = schedule(*times)
    instants = [s.latest_instant(datetime(2027, 3, 20, tzinfo=UTC))]
    while instants[-1] < datetime(2027, 11, 5, tzinfo=UTC):
        following = s.next_instant(instants[-1])
        assert s.latest_instant(following) == following
        assert s.latest_instant(following - timedelta(microseconds=1)) == instants[-1]
        instants.append(following)
    days = {}
    for instant in instants:
        days.setdefault(instant.astimezone(DUBLIN).date(), []).append(instant)
    full_days = [date(2027, 3, 21) + timedelta(days=n) for n in range(225)]
    assert all(len(days.get(day, [])) == len(set(times)) for day in full_days), \
        {day: days.get(day) for day in full_days if len(days.get(day, [])) != len(set(times))}


def test_period_is_the_longest_gap():
    assert schedule("02:00").period() == timedelta(hours=24)
    assert schedule("02:00", "14:00").period() == timedelta(hours=12)
    assert schedule("02:00", "05:00").period() == timedelta(hours=21)


def test_clock_cutoff_only_after_the_recording():
    recorded = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    s = schedule("02:00", recorded_at=recorded)
    assert clock.in_force(s, datetime(2027, 6, 1, 23, 0, tzinfo=UTC)) == ()   # 02:00 today came before R
    (c,) = clock.in_force(s, datetime(2027, 6, 2, 1, 0, tzinfo=UTC))          # 02:00 IST on the 2nd
    assert c.at == datetime(2027, 6, 2, 1, 0, tzinfo=UTC).timestamp()


# --- logout_schedule -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_set_is_idempotent_and_check_changes_nothing(users, monkeypatch):
    at(monkeypatch, datetime(2027, 6, 1, 12, 0, tzinfo=UTC))
    args = ("--set", "02:00", "--also", "14:00", "--timezone", "Europe/Dublin", "--keep-staff",
            "--exclude-user", "alice")
    assert schedule_json(*args, "--check")["changed"] is True
    assert not LogoutSchedule.objects.exists()
    first = schedule_json(*args)
    assert first == {
        "changed": True,
        "schedule": {"times": ["02:00", "14:00"], "timezone": "Europe/Dublin", "scheduler": "cron",
                     "keep_staff": True, "exclude_users": ["alice"], "recorded_at": "2027-06-01T12:00:00+00:00",
                     "previous_cutoffs": []},
        "latest_instant": "2027-06-01T01:00:00+00:00", "next_instant": "2027-06-01T13:00:00+00:00",
    }
    at(monkeypatch, datetime(2027, 6, 1, 12, 5, tzinfo=UTC))
    assert schedule_json(*args)["changed"] is False
    assert schedule_json(*args, "--check")["changed"] is False
    assert LogoutSchedule.objects.get().recorded_at == datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    assert schedule_json(*args[:-2], "--check")["changed"] is True  # without --exclude-user alice
    assert schedule_json("--set", "02:00", "--timezone", "Europe/Dublin", "--scheduler", "none")["changed"]
    shown = schedule_json("--show")
    assert shown["schedule"]["scheduler"] == "none" and shown["schedule"]["times"] == ["02:00"]
    assert set(shown) == {"schedule", "latest_instant", "next_instant"}


@pytest.mark.django_db
def test_show_for_people_and_clear(users, monkeypatch):
    assert schedule_json("--show") == {"schedule": None, "latest_instant": None, "next_instant": None}
    assert "No logout schedule is recorded" in schedule_command("--show")
    at(monkeypatch, datetime(2027, 6, 1, 12, 0, tzinfo=UTC))
    schedule_command("--set", "02:00", "--timezone", "Europe/Dublin", "--keep-staff")
    text = schedule_command("--show")
    assert "Logout schedule: daily at 02:00 Europe/Dublin, scheduler cron, keeps all staff" in text
    assert "Latest scheduled time: 2027-06-01 02:00 IST" in text
    assert "Next scheduled time: 2027-06-02 02:00 IST" in text
    assert schedule_json("--clear", "--check")["changed"] is True
    assert schedule_store.stored_schedule() is not None
    assert schedule_json("--clear") == {"changed": True, "schedule": None, "latest_instant": None,
                                        "next_instant": None}
    assert schedule_json("--clear")["changed"] is False
    assert schedule_store.recorded_schedule() is None


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (("--set", "25:00", "--timezone", "Europe/Dublin"), "argument --set: must be a time HH:MM from 00:00 to 23:59, not '25:00'"),
    (("--set", "02:00", "--also", "2pm", "--timezone", "Europe/Dublin"), "argument --also: must be a time HH:MM"),
    (("--set", "02:00", "--timezone", "Europe/Dubln"), "argument --timezone: 'Europe/Dubln' is not a known IANA"),
    (("--set", "02:00", "--timezone", "UTC", "--scheduler", "at"), "argument --scheduler: invalid choice: 'at'"),
    (("--set", "02:00"), "--set needs --timezone"),
    (("--show", "--timezone", "UTC"), "--timezone goes with --set"),
    (("--set", "02:00", "--timezone", "UTC", "--exclude-user", "nobody"), "unknown username(s) for --exclude-user: nobody"),
    ((), "one of the arguments --set --show --clear is required"),
])
def test_bad_values_are_named_and_change_nothing(users, args, message):
    with pytest.raises(CommandError, match=None) as raised:
        schedule_command(*args)
    assert message in str(raised.value)
    assert not LogoutSchedule.objects.exists()


def test_an_unmigrated_database_says_to_migrate(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "lcstats.settings", "CACHE_URL": "locmem://"}
    for args in (["--show"], ["--set", "02:00", "--timezone", "UTC"]):
        result = subprocess.run([sys.executable, "manage.py", "logout_schedule", *args], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result
        assert "manage.py migrate" in result.stderr
    bad = subprocess.run([sys.executable, "manage.py", "logout_schedule", "--set", "9:99", "--timezone", "UTC"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "argument --set: must be a time HH:MM" in bad.stderr and "'9:99'" in bad.stderr


# --- logout_all_users --scheduled ----------------------------------------------------------------

def scheduled_run(monkeypatch, instant, *args):
    """`logout_all_users --scheduled` at `instant`: (exit status, stdout)."""
    out = StringIO()
    with monkeypatch.context() as pinned:
        at(pinned, instant)
        try:
            call_command("logout_all_users", "--scheduled", *args, stdout=out)
        except SystemExit as exited:
            return exited.code, out.getvalue()
    return 0, out.getvalue()


@pytest.mark.django_db
def test_scheduled_without_a_schedule_fails_naming_the_command(users):
    with pytest.raises(CommandError, match=r"logout_schedule --set") as raised:
        call_command("logout_all_users", "--scheduled", stdout=StringIO())
    assert raised.value.returncode == 1 and not LogoutRun.objects.exists()


@pytest.mark.django_db
def test_scheduled_runs_stand_for_each_instant_once(users, monkeypatch):
    with monkeypatch.context() as pinned:
        at(pinned, datetime(2027, 6, 1, 12, 0, tzinfo=UTC))
        schedule_command("--set", "02:00", "--timezone", "Europe/Dublin")
    # The same day, after recording: 02:00 today came before the recording.
    status, out = scheduled_run(monkeypatch, datetime(2027, 6, 1, 20, 0, tzinfo=UTC))
    assert status == 3 and out.startswith("Not due: no scheduled time has passed since the schedule was "
                                          "recorded at 2027-06-01 13:00 IST; the first is 2027-06-02 02:00 IST")
    status, out = scheduled_run(monkeypatch, datetime(2027, 6, 2, 1, 0, 5, tzinfo=UTC), "--json")
    assert status == 0 and json.loads(out)["stands_for"] == "2027-06-02T01:00:00+00:00"
    run = LogoutRun.objects.get()
    assert run.stands_for == datetime(2027, 6, 2, 1, 0, tzinfo=UTC) and run.cutoff_at == run.stands_for
    status, out = scheduled_run(monkeypatch, datetime(2027, 6, 2, 7, 0, tzinfo=UTC))
    assert status == 3 and out.strip() == (f"Already logged out for 2027-06-02 02:00 IST (Europe/Dublin) by "
                                           f"host {run.host} at 2027-06-02 02:00 IST")
    status, _ = scheduled_run(monkeypatch, datetime(2027, 6, 3, 1, 0, tzinfo=UTC))
    assert status == 0 and LogoutRun.objects.count() == 2



@pytest.mark.django_db
def test_a_failed_run_stands_for_nothing(users, monkeypatch):
    with monkeypatch.context() as pinned:
        at(pinned, datetime(2027, 6, 1, 12, 0, tzinfo=UTC))
        schedule_command("--set", "02:00", "--timezone", "Europe/Dublin")
    two_am = datetime(2027, 6, 2, 1, 0, tzinfo=UTC)
    LogoutRun.objects.create(started_at=two_am, stands_for=two_am, host="web2", engine="x",
                             outcome=LogoutRun.Outcome.FAILED)
    status, out = scheduled_run(monkeypatch, two_am + timedelta(minutes=5), "--json")
    assert status == 0 and json.loads(out)["stands_for"] == two_am.isoformat()
    status, out = scheduled_run(monkeypatch, two_am + timedelta(hours=1), "--json")
    done = LogoutRun.objects.successful().get()
    assert status == 3 and json.loads(out) == {"due": False, "message": (
        f"Already logged out for 2027-06-02 02:00 IST (Europe/Dublin) by host {done.host} at 2027-06-02 02:05 IST")}

# --- the cache -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_recorded_schedule_is_read_from_the_cache(users, django_assert_num_queries):
    schedule_command("--set", "02:00", "--timezone", "UTC")
    with django_assert_num_queries(0):
        assert schedule_store.recorded_schedule().times == (time(2, 0),)
    from django.core.cache import cache
    cache.clear()
    with django_assert_num_queries(1):
        assert schedule_store.recorded_schedule().scheduler == "cron"
