"""The local-time guard across daylight-saving changes, with a pinned clock (no waiting for real time).

Each simulation fires the scheduler the role would set up (the firing times from
students.schedule.firing_times) through the DST days, asks the guard at every firing, records a run
when it says due, and checks: exactly one run per local day in the site's zone, none skipped, each at
the first firing at or after the target. Europe/Dublin changes on 2027-03-28 (01:00 -> 02:00 local)
and 2027-10-31 (02:00 -> 01:00 local); Asia/Kolkata has no DST.
"""
import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client

from students.models import LogoutRun
from students.schedule import LastRun, decide, firing_times, main, parse_due_at, parse_zone, target_instant
from students.tests.conftest import is_signed_in, login

DUBLIN, KOLKATA, NEW_YORK, UTC_ZONE = (ZoneInfo(n) for n in ("Europe/Dublin", "Asia/Kolkata",
                                                                "America/New_York", "UTC"))
SPRING = [date(2027, 3, 27), date(2027, 3, 28), date(2027, 3, 29)]
AUTUMN = [date(2027, 10, 30), date(2027, 10, 31), date(2027, 11, 1)]
YEAR_START, YEAR_DAYS = date(2027, 1, 1), 400  # the span the role would compute the times over


def cron_firings(times, clock_zone, days):
    """Instants at which a cron daemon with its clock in `clock_zone` fires daily jobs at `times`.
    Like Debian's cron: a time skipped by a spring-forward gap fires at the end of the gap, a time
    repeated by a fall-back overlap fires once (the first)."""
    return sorted({target_instant(day, time(hour, minute), clock_zone) for day in days for hour, minute in times})


def systemd_firings(times, zone, days):
    """Instants at which OnCalendar=*-*-* HH:MM:00 ZONE elapses: like systemd, a wall time that does
    not exist that day is skipped (checked against systemd-analyze in tests/test_systemd_units.py) and,
    to be strict, a repeated wall time fires twice."""
    instants = []
    for day in days:
        for hour, minute in times:
            wall = datetime.combine(day, time(hour, minute))
            for fold in (0, 1):
                instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                if instant.astimezone(zone).replace(tzinfo=None) == wall:
                    instants.append(instant)
    return sorted(set(instants))


def hourly_utc_firings(minute, days):
    """PythonAnywhere's hourly task at :minute, in UTC."""
    start = datetime.combine(days[0], time(0, minute), tzinfo=UTC)
    return [start + timedelta(hours=h) for h in range(24 * len(days))]


def simulate(firings, due_at, zone):
    """Step the pinned clock through the firings; return the instants at which a run happened."""
    runs, last = [], None
    for now in firings:
        if decide(now, due_at, zone, last).due:
            runs.append(now)
            last = LastRun(now, "web1")
    return runs


def wider(days):
    """Host dates around the local dates, so every firing that could fall on them is included."""
    return [days[0] - timedelta(days=1), *days, days[-1] + timedelta(days=1)]


def assert_once_a_day(runs, due_at, zone, local_days, max_late=timedelta(0)):
    per_day = Counter(run.astimezone(zone).date() for run in runs)
    for day in local_days:
        assert per_day[day] == 1, f"{day}: {per_day[day]} run(s) at {due_at:%H:%M} {zone}; runs: {runs}"
        target = target_instant(day, due_at, zone)
        [run] = [r for r in runs if r.astimezone(zone).date() == day]
        assert target <= run <= target + max_late, f"{day}: ran at {run}, target {target}"


@pytest.mark.parametrize("clock_zone", [UTC_ZONE, NEW_YORK], ids=["host-UTC", "host-New_York"])
@pytest.mark.parametrize("due", ["01:30", "02:00", "00:30", "01:00"])
@pytest.mark.parametrize("local_days", [SPRING, AUTUMN], ids=["spring", "autumn"])
def test_cron_on_the_host_clock_runs_once_each_dublin_day(clock_zone, due, local_days):
    due_at = parse_due_at(due)
    times = firing_times(due_at, DUBLIN, clock_zone, YEAR_START, YEAR_DAYS)
    runs = simulate(cron_firings(times, clock_zone, wider(local_days)), due_at, DUBLIN)
    assert_once_a_day(runs, due_at, DUBLIN, local_days)


@pytest.mark.parametrize("due", ["01:30", "02:00", "00:30"])
@pytest.mark.parametrize("local_days", [SPRING, AUTUMN], ids=["spring", "autumn"])
def test_systemd_in_the_zone_runs_once_each_dublin_day(due, local_days):
    due_at = parse_due_at(due)
    times = firing_times(due_at, DUBLIN, DUBLIN, YEAR_START, YEAR_DAYS)
    runs = simulate(systemd_firings(times, DUBLIN, wider(local_days)), due_at, DUBLIN)
    assert_once_a_day(runs, due_at, DUBLIN, local_days)


def test_systemd_needs_the_gap_end_entry_for_a_time_in_the_gap():
    """Why the timer carries a second OnCalendar: at 01:30 Dublin alone, 2027-03-28 gets no run."""
    due_at = parse_due_at("01:30")
    assert firing_times(due_at, DUBLIN, DUBLIN, YEAR_START, YEAR_DAYS) == [(1, 30), (2, 0)]
    runs = simulate(systemd_firings([(1, 30)], DUBLIN, wider(SPRING)), due_at, DUBLIN)
    assert date(2027, 3, 28) not in {r.astimezone(DUBLIN).date() for r in runs}


@pytest.mark.parametrize("due", ["01:30", "02:00", "00:30", "00:00", "23:59"])
@pytest.mark.parametrize("local_days", [SPRING, AUTUMN], ids=["spring", "autumn"])
def test_pythonanywhere_hourly_in_utc_runs_once_each_dublin_day(due, local_days):
    due_at = parse_due_at(due)
    utc_times = firing_times(due_at, DUBLIN, UTC_ZONE, YEAR_START, YEAR_DAYS)
    runs = simulate(hourly_utc_firings(utc_times[0][1], wider(local_days)), due_at, DUBLIN)
    assert_once_a_day(runs, due_at, DUBLIN, local_days, max_late=timedelta(minutes=59))


@pytest.mark.parametrize("clock_zone", [UTC_ZONE, NEW_YORK, DUBLIN], ids=str)
def test_a_zone_without_dst_needs_one_time_and_runs_once_a_day(clock_zone):
    due_at = parse_due_at("02:00")
    times = firing_times(due_at, KOLKATA, UTC_ZONE, YEAR_START, YEAR_DAYS)
    assert times == [(20, 30)]  # 02:00 IST (+05:30) is always 20:30 UTC the day before
    host_times = firing_times(due_at, KOLKATA, clock_zone, YEAR_START, YEAR_DAYS)
    for days in SPRING, AUTUMN:  # the host's own DST days (Dublin, New York) must not disturb it
        runs = simulate(cron_firings(host_times, clock_zone, wider(days)), due_at, KOLKATA)
        assert_once_a_day(runs, due_at, KOLKATA, days)


def test_dublin_on_a_utc_host_fires_at_both_offsets_and_the_gap_end():
    assert firing_times(parse_due_at("02:00"), DUBLIN, UTC_ZONE, YEAR_START, YEAR_DAYS) == [(1, 0), (2, 0)]
    # 01:30 is inside the 2027-03-28 gap: that day's target is the gap's end, 01:00 UTC.
    assert firing_times(parse_due_at("01:30"), DUBLIN, UTC_ZONE, YEAR_START, YEAR_DAYS) == [
        (0, 30), (1, 0), (1, 30)]


def test_targets_in_the_gap_and_the_overlap():
    assert target_instant(date(2027, 3, 28), time(1, 30), DUBLIN) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert target_instant(date(2027, 3, 29), time(1, 30), DUBLIN) == datetime(2027, 3, 29, 0, 30, tzinfo=UTC)
    # 01:30 happens twice on 2027-10-31 (IST, then GMT): the first counts.
    assert target_instant(date(2027, 10, 31), time(1, 30), DUBLIN) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


def test_verdict_messages_say_why():
    due_at = parse_due_at("02:00")
    early = decide(datetime(2027, 6, 1, 0, 30, tzinfo=UTC), due_at, DUBLIN)
    assert not early.due
    assert early.message == ("Not due: it is 2027-06-01 01:30 IST in Europe/Dublin; today's logout is due "
                             "at 2027-06-01 02:00 IST")
    ran = LastRun(datetime(2027, 6, 1, 1, 0, tzinfo=UTC), "web2")
    later = decide(datetime(2027, 6, 1, 2, 0, tzinfo=UTC), due_at, DUBLIN, ran)
    assert not later.due
    assert later.message == "Already logged out today at 2027-06-01 02:00 IST (Europe/Dublin) by host web2"
    assert decide(datetime(2027, 6, 2, 1, 0, tzinfo=UTC), due_at, DUBLIN, ran).due  # the next day


@pytest.mark.parametrize("bad", ["24:00", "2:5", "02:60", "", "0200", "noon"])
def test_bad_due_at_is_named(bad):
    with pytest.raises(ValueError, match=r"--due-at must be a time HH:MM .*" + repr(bad)[1:-1]):
        parse_due_at(bad)


# "posix/Europe/Dublin" and "right/UTC" are files under the zoneinfo folder that ZoneInfo opens, not
# zone names: the schedule takes the same IANA list as each user's zone (students.zones).
@pytest.mark.parametrize("bad", ["Europe/Dubln", "Europe", "../etc/passwd", "", "UTC+1", "posix/Europe/Dublin",
                                 "right/UTC"])
def test_bad_zone_is_named(bad):
    with pytest.raises(ValueError, match="is not a known IANA time zone"):
        parse_zone(bad)


def test_the_role_helper_prints_the_times_and_refuses_a_bad_zone(capsys):
    assert main(["--due-at", "01:30", "--timezone", "Europe/Dublin", "--from-date", "2027-01-01"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["zone_times"] == [{"hour": 1, "minute": 30}, {"hour": 2, "minute": 0}]
    assert printed["utc_times"] == [{"hour": 0, "minute": 30}, {"hour": 1, "minute": 0}, {"hour": 1, "minute": 30}]
    assert main(["--due-at", "01:30", "--timezone", "Mars/Olympus"]) == 2
    assert "'Mars/Olympus' is not a known IANA time zone" in capsys.readouterr().err


# The real command, with Django's clock pinned (the guard and the run record both read timezone.now).

def run_at(monkeypatch, instant, *args):
    out = StringIO()
    with monkeypatch.context() as pinned:  # only for the command: the pages run on the real clock
        pinned.setattr("django.utils.timezone.now", lambda: instant)
        call_command("logout_all_users", *args, stdout=out)
    return out.getvalue()


def skipped_at(monkeypatch, instant, *args):
    """A run the guard turns away: its reason on stdout, exit status 3 (EXIT_NOT_DUE)."""
    out = StringIO()
    with monkeypatch.context() as pinned, pytest.raises(SystemExit) as exited:
        pinned.setattr("django.utils.timezone.now", lambda: instant)
        call_command("logout_all_users", *args, stdout=out)
    assert exited.value.code == 3
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_runs_once_across_the_spring_gap(users, monkeypatch):
    guard = ("--due-at", "01:30", "--timezone", "Europe/Dublin")
    browser = login("alice")
    # Host in UTC, cron at 00:30, 01:00 and 01:30 UTC on 2027-03-28 (the gap day). (The pinned clock
    # is months ahead, so the purge counts today's session as expired: deleted all the same.)
    out = skipped_at(monkeypatch, datetime(2027, 3, 28, 0, 30, tzinfo=UTC), *guard)
    assert out.strip() == ("Not due: it is 2027-03-28 00:30 GMT in Europe/Dublin; today's logout is due at "
                           "2027-03-28 02:00 IST")
    assert is_signed_in(browser, "alice") and not LogoutRun.objects.exists()
    out = run_at(monkeypatch, datetime(2027, 3, 28, 1, 0, tzinfo=UTC), *guard)
    assert out.startswith("Successfully logged out all users")
    assert LogoutRun.objects.get().started_at == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert not Session.objects.exists() and not is_signed_in(browser, "alice")
    Client().get("/accounts/login/")  # a fresh anonymous session the next run must leave alone
    sessions = Session.objects.count()
    out = skipped_at(monkeypatch, datetime(2027, 3, 28, 1, 30, tzinfo=UTC), *guard)
    assert out.startswith("Already logged out today at 2027-03-28 02:00 IST (Europe/Dublin) by host ")
    assert LogoutRun.objects.count() == 1 and Session.objects.count() == sessions


@pytest.mark.django_db
def test_a_failed_run_does_not_count_and_json_says_not_due(users, monkeypatch):
    LogoutRun.objects.create(started_at=datetime(2027, 6, 1, 1, 0, tzinfo=UTC), host="web2", engine="x",
                             outcome=LogoutRun.Outcome.FAILED)
    out = run_at(monkeypatch, datetime(2027, 6, 1, 1, 5, tzinfo=UTC), "--due-at", "02:00",
                 "--timezone", "Europe/Dublin", "--json")
    assert json.loads(out)["outcome"] == "success"
    out = skipped_at(monkeypatch, datetime(2027, 6, 1, 2, 0, tzinfo=UTC), "--due-at", "02:00",
                 "--timezone", "Europe/Dublin", "--json")
    assert json.loads(out) == {"due": False, "message": "Already logged out today at 2027-06-01 02:05 IST "
                               f"(Europe/Dublin) by host {LogoutRun.objects.first().host}"}


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (("--due-at", "02:00", "--timezone", "Europe/Dubln"), "--timezone 'Europe/Dubln' is not a known IANA"),
    (("--due-at", "25:00", "--timezone", "Europe/Dublin"), "--due-at must be a time HH:MM"),
    (("--due-at", "02:00"), "--due-at and --timezone go together"),
])
def test_bad_schedule_options_fail_and_change_nothing(users, args, message):
    browser = login("alice")
    with pytest.raises(CommandError, match=message):
        call_command("logout_all_users", *args, stdout=StringIO())
    assert is_signed_in(browser, "alice") and not LogoutRun.objects.exists()
