"""The site's own knowledge of its logout schedule, and the clock cutoff that follows from it.

The schedule (local times, a zone, who is kept, which scheduler cleans storage) is recorded in the
database by `manage.py logout_schedule` (students.models.LogoutSchedule). From it the site knows
every scheduled instant: each local time on each local date, with students.schedule.target_instant
deciding daylight-saving days (a time in a spring-forward gap happens at the end of the gap; one
that happens twice counts once, at its first occurrence), so no day is doubled or missed.

Clock cutoffs (students.cutoff.Cutoff): the latest scheduled instant that has passed, if it is later
than the schedule's recording time R, with the schedule's keep rules; plus the cutoffs that were in
force when the schedule was recorded, changed or cleared (stored with it). So recording never logs
anyone out on the spot, and changing or clearing never forgives a cutoff that had already passed.
The middleware enforces them at each authenticated request whether or not any job ran.

Per-user mode (students.zones): the instants are each session's own zone's, the zone stamped in the
session at login; a cutoff kept from such a schedule applies to its zone's sessions only.

Cost on the request path (cutoffs_in_force): one cache round trip for the run cutoff and the
schedule together; on a miss (every CACHE_SECONDS per process with locmem) one indexed query each.
The computed cutoffs are remembered per process (and zone) until the next scheduled instant passes,
so a request pays a comparison, not a calculation. Anonymous requests never get here.

The warning banner (students.warning) counts down to the next scheduled instant (next_instant_at,
remembered with the cutoffs) and reuses the schedule the middleware read (schedule_last_read).
"""
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from students import cutoff, zones
from students.cutoff import Cutoff
from students.models import LogoutRun, LogoutSchedule
from students.schedule import NotDue, ScheduleError, parse_due_at, parse_zone, target_instant
from students.selection import ZONE_KEY, resolve_keep_rule

SCHEDULERS = tuple(LogoutSchedule.Scheduler.values)
CACHE_KEY = "students:logout_schedule"
DAY = timedelta(days=1)
WARN_MINUTES_MAX = 720  # the warning banner shows at most 12 hours ahead
MAX_SESSION_AGE_HOURS_MAX = 8760  # a year


@dataclass(frozen=True)
class Schedule:
    """A recorded schedule. Empty `times` only inside this module: a cleared schedule whose
    previous cutoffs still hold (recorded_schedule() returns None for it)."""

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
    previous_cutoffs: tuple = ()             # Cutoff, in force when this was recorded
    zone: ZoneInfo = field(default=None, compare=False, repr=False)

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

    def own_cutoff(self, now, zone=None):
        """This schedule's clock cutoff at `now` (in `zone` for per-user mode): its latest passed
        instant after R, or None."""
        latest = self.latest_instant(now, zone)
        if latest is None or latest <= self.recorded_at:
            return None
        return Cutoff(at=latest.timestamp(), kept_user_ids=self.kept_user_ids, keep_staff=self.keep_staff,
                      keep_remembered=self.keep_remembered)

    def in_force(self, now, session_zone=None):
        """Every clock cutoff in force at `now` (Cutoff, oldest first) for a session logged out by
        `session_zone` ((name, ZoneInfo) from zone_of; default the schedule's): in per-user mode its
        own cutoff is that zone's, and a previous cutoff kept for another zone is left out."""
        name, zone = session_zone or (self.timezone, self.zone)
        own = self.own_cutoff(now, zone if self.per_user_zones else None)
        return tuple(c for c in self.previous_cutoffs if c.zone in ("", name)) + ((own,) if own else ())

    def for_everyone(self, now):
        """The clock cutoffs that end every session whatever its zone (the site's own cleanup)."""
        own = None if self.per_user_zones else self.own_cutoff(now)
        return tuple(c for c in self.previous_cutoffs if not c.zone) + ((own,) if own else ())

    def zone_of(self, session):
        """The zone (name, ZoneInfo) that logs out this session: in per-user mode the zone stamped at
        its login (students.zones.stamp), else, or when it has none, the schedule's."""
        if session is not None:
            name = session.get(ZONE_KEY) or ""
            zone = zones.zone_info(name) if name else None
            if zone is not None:
                return name, zone
        return self.timezone, self.zone

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


# --- reading it ----------------------------------------------------------------------------------

def _as_cache_value(row):
    if row is None:
        return {"row": None}
    return {"row": {
        "times": list(row.times), "timezone": row.timezone, "scheduler": row.scheduler,
        "keep_staff": row.keep_staff, "excluded_usernames": list(row.excluded_usernames),
        "kept_user_ids": [str(i) for i in row.kept_user_ids], "recorded_at": row.recorded_at.isoformat(),
        "previous_cutoffs": list(row.previous_cutoffs), "warn_minutes": row.warn_minutes,
        "keep_remembered": row.keep_remembered, "per_user_zones": row.per_user_zones,
        "max_session_age_hours": row.max_session_age_hours,
    }}


def _load_value():
    value = _as_cache_value(LogoutSchedule.objects.filter(pk=1).first())
    cache.set(CACHE_KEY, value, cutoff.CACHE_SECONDS)
    return value


# Per process: the last cache value turned into a Schedule, so a request compares a small dict
# instead of rebuilding it. NOT_READ until the first read.
NOT_READ = object()
_parsed = (NOT_READ, None)


def _schedule_from(value):
    global _parsed
    row = value["row"]
    if row is None:
        _parsed = (None, None)
        return None
    if _parsed[0] == row:
        return _parsed[1]
    schedule = Schedule(
        times=tuple(parse_due_at(t) for t in row["times"]), timezone=row["timezone"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]).astimezone(UTC), scheduler=row["scheduler"],
        keep_staff=row["keep_staff"], excluded_usernames=tuple(row["excluded_usernames"]),
        kept_user_ids=frozenset(row["kept_user_ids"]),
        previous_cutoffs=tuple(_cutoff_from(c) for c in row["previous_cutoffs"]),
        warn_minutes=row.get("warn_minutes", 0),  # a value cached before migration 0003 has none
        keep_remembered=row.get("keep_remembered", False),  # nor before 0004
        per_user_zones=row.get("per_user_zones", False),  # nor before 0005
        max_session_age_hours=row.get("max_session_age_hours", 0),  # nor before 0008
    )
    _parsed = (row, schedule)
    return schedule


def _cutoff_from(stored):
    return Cutoff(at=datetime.fromisoformat(stored["at"]).timestamp(),
                  kept_user_ids=frozenset(stored["kept_user_ids"]), keep_staff=stored["keep_staff"],
                  keep_remembered=stored.get("keep_remembered", False), zone=stored.get("zone", ""))


def _cutoff_to(c):
    return {"at": datetime.fromtimestamp(c.at, UTC).isoformat(), "keep_staff": c.keep_staff,
            "keep_remembered": c.keep_remembered, "kept_user_ids": sorted(c.kept_user_ids),
            **({"zone": c.zone} if c.zone else {})}


def _state(value=None):
    """The recorded row as a Schedule (times may be empty: cleared), or None when nothing is stored."""
    if value is None:
        value = cache.get(CACHE_KEY)
        if value is None:
            value = _load_value()
    return _schedule_from(value)


def recorded_schedule():
    """The recorded Schedule, or None. Cached like students.cutoff (one cache read; on a miss, one
    indexed query)."""
    state = _state()
    return state if state is not None and state.times else None


def schedule_last_read():
    """The recorded Schedule (or None) as this process last read it. The cutoff middleware reads it
    at every signed-in request before the view runs, so the warning banner reuses that read: no
    second cache round trip. Before any read in this process: recorded_schedule()."""
    row, state = _parsed
    if row is NOT_READ:
        return recorded_schedule()
    return state if state is not None and state.times else None


def display_zone(session):
    """In per-user mode, the zone pages show this session's times in (its own); else None (the
    site's). Reuses the schedule the cutoff middleware just read: no query, no cache read."""
    schedule = schedule_last_read()
    return schedule.zone_of(session)[1] if schedule is not None and schedule.per_user_zones else None


# Per process: for the last schedule seen, the clock cutoffs of each zone, valid from that zone's
# latest passed instant until its next one (epoch seconds): {zone name: (start, end, cutoffs)}.
_windows = (None, {})


def _window_at(schedule, now, session=None):
    global _windows
    seen, by_zone = _windows
    if seen is not schedule:
        by_zone = {}
        _windows = (schedule, by_zone)
    session_zone = schedule.zone_of(session)
    stamp = now.timestamp()
    window = by_zone.get(session_zone[0])
    if window is not None and window[0] <= stamp < window[1]:
        return window
    zone = session_zone[1] if schedule.per_user_zones else None
    latest, coming = schedule.latest_instant(now, zone), schedule.next_instant(now, zone)
    window = (latest.timestamp() if latest else float("-inf"), coming.timestamp() if coming else float("inf"),
              schedule.in_force(now, session_zone))
    by_zone[session_zone[0]] = window
    return window


def clock_cutoffs(schedule, now, session=None):
    """schedule.in_force(now) for this session's zone, remembered until its next scheduled instant."""
    return _window_at(schedule, now, session)[2]


def next_instant_at(schedule, now, session=None):
    """schedule.next_instant(now) in epoch seconds (inf: none) for this session's zone, remembered
    like clock_cutoffs: what the warning banner counts down to."""
    return _window_at(schedule, now, session)[1]


def cutoffs_in_force(now, session=None):
    """Every cutoff the middleware enforces at `now` on `session`: the latest run's and the clock's
    (its zone's, in per-user mode). With no session: those that end every session (the cleanup).
    One cache round trip for both; on a miss, one indexed query for the missing one."""
    values = cache.get_many([cutoff.CACHE_KEY, CACHE_KEY])
    run_value = values.get(cutoff.CACHE_KEY)
    run_value = run_value if run_value is not None else cutoff.load_value()
    run = cutoff.from_cache_value(run_value)
    schedule = _state(values.get(CACHE_KEY))
    found = (run,) if run is not None else ()
    if schedule is None:
        return found + (cutoff.user_cutoffs(run_value) if session is not None else ())
    if session is None:
        return found + schedule.for_everyone(now)
    max_age = (cutoff.max_age_cutoff(schedule.max_session_age_hours, now),) if schedule.max_session_age_hours else ()
    return found + cutoff.user_cutoffs(run_value) + max_age + clock_cutoffs(schedule, now, session)


# --- recording it --------------------------------------------------------------------------------

def parse_times(main, also=()):
    """("HH:MM", ["HH:MM", ...]) -> times, the main one first, extras sorted, each once."""
    try:
        first = parse_due_at(main)
    except ScheduleError:
        raise ScheduleError(f"--set must be a time HH:MM from 00:00 to 23:59, not {main!r}") from None
    extras = set()
    for text in also:
        try:
            extras.add(parse_due_at(text))
        except ScheduleError:
            raise ScheduleError(f"--also must be a time HH:MM from 00:00 to 23:59, not {text!r}") from None
    return (first, *sorted(extras - {first}))


def _previous(state, now):
    """The cutoffs in force at `now` under the stored state, one per set of keep rules (the latest)."""
    if state is None:
        return ()
    if state.per_user_zones:
        own = zone_cutoffs(state, now)
    else:
        own = [c for c in [state.own_cutoff(now)] if c is not None]
    latest = {}
    for c in (*state.previous_cutoffs, *own):
        rules = (c.keep_staff, c.keep_remembered, c.kept_user_ids, c.zone)
        if rules not in latest or latest[rules].at < c.at:
            latest[rules] = c
    return tuple(sorted(latest.values(), key=lambda c: c.at))


def zone_cutoffs(schedule, now):
    """Per-user mode: each zone in use's own clock cutoff, tagged with its zone (the sessions it ends)."""
    return [replace(c, zone=name) for name in zones.zones_in_use(schedule)
            for c in [schedule.own_cutoff(now, zones.zone_info(name))] if c is not None]


def record_schedule(main, also=(), *, zone_name, scheduler="cron", keep_staff=False, exclude_users=(),
                    warn_minutes=0, keep_remembered=False, per_user_zones=False, max_session_age_hours=0,
                    check=False):
    """Record (or with check=True, only compare) the schedule. Returns (changed, Schedule).
    Raises ScheduleError (bad time, zone, scheduler or warning minutes) or selection.UnknownUsers."""
    times = parse_times(main, also)
    zone = parse_zone(zone_name)
    if scheduler not in SCHEDULERS:
        raise ScheduleError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}")
    if warn_minutes != 0 and not 1 <= warn_minutes <= WARN_MINUTES_MAX:
        raise ScheduleError(f"--warn-minutes must be a whole number from 1 to {WARN_MINUTES_MAX}, not {warn_minutes!r}")
    if not 0 <= max_session_age_hours <= MAX_SESSION_AGE_HOURS_MAX:
        raise ScheduleError(f"--max-session-age must be a whole number of hours from 1 to {MAX_SESSION_AGE_HOURS_MAX} "
                            f"(0: off), not {max_session_age_hours!r}")
    keep = resolve_keep_rule(exclude_users, False)
    wanted = dict(times=[f"{t:%H:%M}" for t in times], timezone=str(zone), scheduler=scheduler,
                  keep_staff=keep_staff, excluded_usernames=list(keep.usernames), kept_user_ids=keep.kept_ids,
                  warn_minutes=warn_minutes, keep_remembered=keep_remembered, per_user_zones=per_user_zones,
                  max_session_age_hours=max_session_age_hours)
    with transaction.atomic():
        row = LogoutSchedule.objects.select_for_update().filter(pk=1).first()
        if row is not None and all(getattr(row, name) == value for name, value in wanted.items()):
            return False, _schedule_from(_as_cache_value(row))
        now = timezone.now()
        previous = _previous(_schedule_from(_as_cache_value(row)) if row else None, now)
        new = LogoutSchedule(pk=1, recorded_at=now, previous_cutoffs=[_cutoff_to(c) for c in previous],
                             last_cleanup_at=row.last_cleanup_at if row else None, **wanted)
        if not check:
            new.save()
    if not check:
        _publish(new)
    return True, _schedule_from(_as_cache_value(new))


def clear_schedule(*, check=False):
    """Remove the schedule; the cutoffs in force stay. Returns changed."""
    with transaction.atomic():
        row = LogoutSchedule.objects.select_for_update().filter(pk=1).first()
        if row is None or not row.times:
            return False
        if check:
            return True
        now = timezone.now()
        previous = _previous(_schedule_from(_as_cache_value(row)), now)
        row.times, row.recorded_at = [], now
        row.previous_cutoffs = [_cutoff_to(c) for c in previous]
        row.save()
    _publish(row)
    return True


def _publish(row):
    cache.set(CACHE_KEY, _as_cache_value(row), cutoff.CACHE_SECONDS)


def stored_schedule():
    """The recorded Schedule read from the database itself, not the cache (for commands), or None."""
    state = _schedule_from(_as_cache_value(LogoutSchedule.objects.filter(pk=1).first()))
    return state if state is not None and state.times else None


# --- what a --scheduled run stands for -------------------------------------------------------------

class NoSchedule(Exception):
    """A --scheduled run on a site with no recorded schedule."""


def due_instant(now):
    """The scheduled instant a run fired at `now` stands for: the latest one that has passed since
    the schedule was recorded (in per-user mode, students.zones.DueZones: the zones whose time has
    passed). Raises NoSchedule, or schedule.NotDue when no instant has passed since the recording
    or a successful run already stands for it. Read from the database: call it under the cluster
    lock."""
    schedule = stored_schedule()
    if schedule is None:
        raise NoSchedule("no logout schedule is recorded; record it first with "
                         "`manage.py logout_schedule --set HH:MM --timezone ZONE`")
    if schedule.per_user_zones:
        return zones.due_zones(schedule, now)
    latest = schedule.latest_instant(now)
    if latest is None or latest <= schedule.recorded_at:
        coming = schedule.next_instant(now)
        raise NotDue(f"Not due: no scheduled time has passed since the schedule was recorded at "
                     f"{_local(schedule.recorded_at, schedule.zone)}; the first is {_local(coming, schedule.zone)}")
    done = (LogoutRun.objects.filter(outcome=LogoutRun.Outcome.SUCCESS, stands_for__gte=latest, zones__isnull=True)
            .order_by("-started_at").first())
    if done is not None:
        raise NotDue(f"Already logged out for {_local(latest, schedule.zone)} ({schedule.timezone}) by host "
                     f"{done.host} at {_local(done.started_at, schedule.zone)}")
    return latest


def _local(instant, zone):
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
