"""Local times in a time zone, as schedulers and the site see them: pure, no database, cache or settings.

Schedulers fire at times of the host's clock (PythonAnywhere: UTC). A site's "02:00" is a local
time in its own zone, which moves against the host clock twice a year and may not exist (spring
forward) or happen twice (fall back). One rule settles every such day:

    On each local date D in ZONE the target is the first instant of D whose local time is at or
    after HH:MM (inside a spring-forward gap: the end of the gap) -- target_instant.

Here: that rule, the one check of a zone name (the IANA list) and of a time (HH:MM), the one way
messages show an instant (local_time), the host times a scheduler must fire at so that every
target is hit (firing_times), and a recorded schedule's every instant (Schedule; recorded, read and
cleared by students.schedule_store). A --scheduled run stands for the latest target that has passed
and no run stands for yet (students.due.due_at, read under the cluster lock), so it runs once per
target whatever the extra firings.

Run as `python -m students.schedule` by the Ansible role with the site's own Python and tzdata,
without Django configured: validate the zone and print the firing times as JSON (main).
"""
import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

DAY = timedelta(days=1)
_HH_MM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


class ScheduleError(ValueError):
    """A time (HH:MM) or time zone that cannot be used; the message names it."""


def parse_due_at(text):
    match = _HH_MM.match(text or "")
    if not match:
        raise ScheduleError(f"--due-at must be a time HH:MM from 00:00 to 23:59, not {text!r}")
    return time(int(match[1]), int(match[2]))


# --- time zones: the one rule for "is this a zone", shared by the schedule and each user's zone ----

@lru_cache(maxsize=1)
def iana_names():
    """The IANA zone names this host's tzdata (or the tzdata package) knows: the only zones accepted
    anywhere. ZoneInfo alone would also take file paths under the zoneinfo folder
    ("posix/Europe/Dublin", "right/UTC"), which are not zone names."""
    return frozenset(available_timezones())


class ZoneError(ScheduleError):
    """A time zone that is not on the IANA list; the message names it."""


def check_zone(name):
    if name not in iana_names():
        raise ZoneError(f"{name!r} is not a known IANA time zone (e.g. Europe/Dublin)")
    return name


@lru_cache(maxsize=1024)
def zone_info(name):
    """ZoneInfo for a stored or stamped name, or None ("" or anything not on the IANA list)."""
    return ZoneInfo(name) if name in iana_names() else None


def parse_zone(name):
    """ZoneInfo for a --timezone value on the IANA list; else ScheduleError naming it."""
    try:
        return ZoneInfo(check_zone(name))
    except ZoneError as exc:
        raise ScheduleError(f"--timezone {exc}") from None


def local_time(instant, zone):
    """How every message shows an instant: its local date, time and zone abbreviation in `zone`."""
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def target_instant(day, due_at, zone):
    """The first instant of local date `day` in `zone` whose wall time is at or after `due_at` (UTC)."""
    wall = datetime.combine(day, due_at)
    early = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(early, zone) == wall:
        return early  # exists (fold=0 is the earlier of two in a fall-back overlap)
    # Inside a spring-forward gap: the answer is the transition, between the two readings of the
    # wall time. Wall time only moves forward there, so a bisection to the second finds it.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = early
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if _wall(high.replace(microsecond=0), zone) >= wall else high


def _wall(instant, zone):
    return instant.astimezone(zone).replace(tzinfo=None)


# --- a recorded schedule and its instants ---------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """A recorded schedule (students.schedule_store reads, records and clears it). Empty `times` only
    inside the store: a cleared schedule whose previous cutoffs still hold (recorded_schedule()
    returns None for it)."""

    times: tuple                     # datetime.time, the main time first
    timezone: str                    # IANA name
    recorded_at: datetime            # aware, UTC: R
    scheduler: str = "cron"
    keep_staff: bool = False
    excluded_usernames: tuple = ()
    kept_user_ids: frozenset = frozenset()   # str(pk) of the excluded users
    warn_minutes: int = 0                    # the warning banner's window (students.warning); 0: off
    keep_remembered: bool = False            # "keep me signed in" offered and kept (students.remember)
    per_user_zones: bool = False             # each user's own zone (students.zones)
    max_session_age_hours: int = 0           # students.cutoff.max_age_cutoff; 0: none
    previous_cutoffs: tuple = ()             # students.cutoff.Cutoff, in force when this was recorded
    zone: ZoneInfo = field(default=None, compare=False, repr=False)
    # students.clock's memo of each zone's clock cutoffs, valid from that zone's latest passed instant
    # until its next one (epoch seconds): {zone name: (start, end, cutoffs)}. It lives on the instance
    # because its lifetime is the instance's: the store parses each stored row once per process
    # (students.schedule_store.parsed_schedule), so the memo goes when the row does.
    windows: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.zone is None and self.timezone:
            object.__setattr__(self, "zone", ZoneInfo(self.timezone))

    def instants_on(self, day, zone=None):
        """The scheduled instants (aware UTC) of local date `day` in `zone` (default: the schedule's),
        in order, each once."""
        zone = zone or self.zone
        return sorted({target_instant(day, at, zone) for at in self.times})

    def latest_instant(self, now, zone=None):
        """The latest scheduled instant at or before `now` (aware), as an aware UTC datetime."""
        if not self.times:
            return None
        day = now.astimezone(zone or self.zone).date()
        for back in range(3):  # a local date's instants lie on that date; two days back is plenty
            passed = [s for s in self.instants_on(day - back * DAY, zone) if s <= now]
            if passed:
                return passed[-1]
        return None

    def next_instant(self, now, zone=None):
        """The first scheduled instant after `now` (aware): what a warning banner counts down to."""
        if not self.times:
            return None
        day = now.astimezone(zone or self.zone).date()
        for ahead in range(3):
            coming = [s for s in self.instants_on(day + ahead * DAY, zone) if s > now]
            if coming:
                return coming[0]
        return None

    def period(self):
        """The longest gap between consecutive scheduled times, on the wall clock (24h for a daily
        schedule; a daylight-saving day can make a real gap one hour longer or shorter)."""
        minutes = sorted({at.hour * 60 + at.minute for at in self.times})
        if not minutes:
            return None
        gaps = [b - a for a, b in zip(minutes, minutes[1:])] + [minutes[0] + 24 * 60 - minutes[-1]]
        return timedelta(minutes=max(gaps))

    def zone_named(self, stamp):
        """The zone (name, ZoneInfo) that logs out a session whose login stamped zone `stamp`
        (students.zones.stamp; "" for none): that zone if it is on the IANA list, else the schedule's."""
        zone = zone_info(stamp) if stamp else None
        return (stamp, zone) if zone is not None else (self.timezone, self.zone)

    def as_dict(self):
        """The JSON view (`logout_schedule --show --json`)."""
        return {
            "times": [f"{at:%H:%M}" for at in self.times], "timezone": self.timezone,
            "scheduler": self.scheduler, "keep_staff": self.keep_staff,
            "exclude_users": list(self.excluded_usernames), "recorded_at": self.recorded_at.isoformat(),
            "previous_cutoffs": [datetime.fromtimestamp(c.at, UTC).isoformat() for c in self.previous_cutoffs],
            # Only when on, as on the command line (--warn-minutes absent: no warning; likewise
            # --keep-remembered).
            **({"warn_minutes": self.warn_minutes} if self.warn_minutes else {}),
            **({"keep_remembered": True} if self.keep_remembered else {}),
            **({"per_user_zones": True} if self.per_user_zones else {}),
            **({"max_session_age_hours": self.max_session_age_hours} if self.max_session_age_hours else {}),
        }


def firing_times(due_at, zone, clock_zone, first_day, days):
    """The distinct (hour, minute) times of `clock_zone`'s clock at which the targets of local dates
    first_day .. first_day+days-1 fall: fire at all of them and every target is hit on time."""
    times = set()
    for offset in range(days):
        target = target_instant(first_day + timedelta(days=offset), due_at, zone)
        local = target.astimezone(clock_zone)
        times.add((local.hour, local.minute))
    return sorted(times)


def host_clock_zone(localtime="/etc/localtime"):
    """The zone of the host clock cron and systemd read (/etc/localtime); UTC when there is none."""
    try:
        with open(localtime, "rb") as handle:
            return ZoneInfo.from_file(handle, key=_zone_key(localtime))
    except OSError:
        return ZoneInfo("UTC")


def _zone_key(localtime):
    target = os.path.realpath(localtime)
    return target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else "localtime"


def main(argv=None):
    """For the Ansible role, run on the target with the site's own Python and tzdata:
    validate the zone and print, as JSON, the times each scheduler must fire at."""
    parser = argparse.ArgumentParser(prog="python -m students.schedule", description=main.__doc__)
    parser.add_argument("--due-at", required=True, metavar="HH:MM")
    parser.add_argument("--timezone", required=True, metavar="ZONE")
    parser.add_argument("--from-date", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=800, help="span to cover (default 800: two years)")
    options = parser.parse_args(argv)
    try:
        due_at, zone = parse_due_at(options.due_at), parse_zone(options.timezone)
    except ScheduleError as exc:
        print(exc, file=sys.stderr)
        return 2
    first_day = options.from_date or datetime.now(zone).date()
    host_zone = host_clock_zone()

    def spans(clock_zone):
        return [{"hour": h, "minute": m} for h, m in firing_times(due_at, zone, clock_zone, first_day, options.days)]

    print(json.dumps({
        "timezone": str(zone), "due_at": f"{due_at:%H:%M}", "host_zone": str(host_zone),
        "host_times": spans(host_zone), "zone_times": spans(zone), "utc_times": spans(ZoneInfo("UTC")),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
