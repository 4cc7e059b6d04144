"""Local times across daylight-saving changes, with a pinned clock (no waiting for real time).

Each simulation fires the scheduler the role would set up (the firing times from
students.schedule.firing_times) through the DST days, asks at every firing what a --scheduled run
asks (students.due.due_at: has a scheduled instant passed that no run stands for yet?),
records a run when one has, and checks: exactly one run per local day in the site's zone, none skipped, each at
the first firing at or after the target. Europe/Dublin changes on 2027-03-28 (01:00 -> 02:00 local)
and 2027-10-31 (02:00 -> 01:00 local); Asia/Kolkata has no DST.
"""
import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from students.schedule import firing_times, main, parse_due_at, parse_zone, target_instant
from students.tests.helpers import simulate

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
