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

Cost on the request path (read_state): one cache round trip for the run cutoff and the schedule
together; on a miss (every CACHE_SECONDS per process with locmem) one indexed query each. Each stored
schedule is parsed once per process (parsed_schedule), and its computed cutoffs are remembered on it
(per zone) until the next scheduled instant passes, so a request pays a comparison, not a calculation.
Anonymous requests never get here.

What a request read lives on the request: the cutoff middleware puts the schedule it enforced there
(schedule_for), and the warning banner (students.warning), which counts down to the next scheduled
instant (next_instant_at, remembered with the cutoffs), and the page's zone (display_zone) use that
read: no second cache round trip, and never the read of another request served at the same time.
"""
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from students import cutoff, zones
from students.cutoff import Cutoff
from students.models import LogoutRun, LogoutSchedule
from students.schedule import (NotDue, ScheduleError, local_time, parse_due_at, parse_zone, target_instant,
                               zone_info)
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
    # The clock cutoffs of each zone, valid from that zone's latest passed instant until its next one
    # (epoch seconds): {zone name: (start, end, cutoffs)}. Filled by clock_cutoffs/next_instant_at.
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
            zone = zone_info(name) if name else None
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
    value = _as_cache_value(LogoutSchedule.objects.current().first())
    cache.set(CACHE_KEY, value, cutoff.CACHE_SECONDS)
    return value


def _schedule_from(value):
    row = value["row"]
    return None if row is None else parsed_schedule(json.dumps(row, sort_keys=True))


@lru_cache(maxsize=8)
def parsed_schedule(row_json):
    """The Schedule of a stored row (as JSON), parsed once per process: the same row gives the same
    Schedule, with the cutoffs already computed on it. Keyed by what was stored, so every thread gets
    the schedule it read."""
    row = json.loads(row_json)
    return Schedule(
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


# The request attribute where the cutoff middleware leaves the schedule it read (schedule_for).
REQUEST_ATTRIBUTE = "logout_schedule"


def schedule_for(request):
    """The recorded Schedule (or None) as the cutoff middleware read it for this request
    (students.middleware puts it on the request at every signed-in request, before the view runs):
    the banner and the page's zone agree with the cutoffs it enforced, with no second cache round
    trip. A request it did not read for (middleware not installed, anonymous): recorded_schedule()."""
    try:
        return getattr(request, REQUEST_ATTRIBUTE)
    except AttributeError:
        return recorded_schedule()


def display_zone(schedule, session):
    """In per-user mode, the zone pages show this session's times in (its own); else None (the
    site's)."""
    return schedule.zone_of(session)[1] if schedule is not None and schedule.per_user_zones else None


def _window_at(schedule, now, session=None):
    by_zone = schedule.windows
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


@dataclass(frozen=True)
class State:
    """What one read found: the latest run's cutoff, the cutoffs of runs for some users alone and the
    stored schedule (read_state)."""

    run: Cutoff | None
    stored: Schedule | None  # its times may be empty: cleared, its previous cutoffs still hold
    users: tuple = ()  # cutoff.UserCutoffs of runs for some users alone (--user), if any

    @property
    def schedule(self):
        """The recorded Schedule, or None (as recorded_schedule())."""
        return self.stored if self.stored is not None and self.stored.times else None

    def cutoffs(self, now, session=None):
        """Every cutoff the middleware enforces at `now` on `session`: the latest run's and the
        clock's (its zone's, in per-user mode). With no session: those that end every session (the
        cleanup)."""
        found = (self.run,) if self.run is not None else ()
        if session is None:  # the cleanup: only what ends every session
            return found + (self.stored.for_everyone(now) if self.stored is not None else ())
        found += self.users
        if self.stored is None:
            return found
        hours = self.stored.max_session_age_hours
        max_age = (cutoff.max_age_cutoff(hours, now),) if hours else ()
        return found + max_age + clock_cutoffs(self.stored, now, session)


def read_state():
    """The run cutoff and the schedule in one cache round trip; on a miss, one indexed query for the
    missing one."""
    values = cache.get_many([cutoff.CACHE_KEY, CACHE_KEY])
    run_value = values.get(cutoff.CACHE_KEY)
    run_value = run_value if run_value is not None else cutoff.load_value()
    return State(run=cutoff.from_cache_value(run_value), stored=_state(values.get(CACHE_KEY)),
                 users=cutoff.user_cutoffs(run_value))


def cutoffs_in_force(now, session=None):
    """read_state().cutoffs(now, session): every cutoff in force at `now` on `session`."""
    return read_state().cutoffs(now, session)


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
            for c in [schedule.own_cutoff(now, zone_info(name))] if c is not None]


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
        row = LogoutSchedule.objects.select_for_update().current().first()
        if row is not None and all(getattr(row, name) == value for name, value in wanted.items()):
            return False, _schedule_from(_as_cache_value(row))
        now = timezone.now()
        previous = _previous(_schedule_from(_as_cache_value(row)) if row else None, now)
        new = LogoutSchedule(pk=LogoutSchedule.ROW_PK, recorded_at=now,
                             previous_cutoffs=[_cutoff_to(c) for c in previous],
                             last_cleanup_at=row.last_cleanup_at if row else None, **wanted)
        if not check:
            new.save()
    if not check:
        _publish(new)
    return True, _schedule_from(_as_cache_value(new))


def clear_schedule(*, check=False):
    """Remove the schedule; the cutoffs in force stay. Returns changed."""
    with transaction.atomic():
        row = LogoutSchedule.objects.select_for_update().current().first()
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
    state = _schedule_from(_as_cache_value(LogoutSchedule.objects.current().first()))
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
                     f"{local_time(schedule.recorded_at, schedule.zone)}; the first is {local_time(coming, schedule.zone)}")
    done = LogoutRun.objects.successful().site_wide().filter(stands_for__gte=latest).first()
    if done is not None:
        raise NotDue(f"Already logged out for {local_time(latest, schedule.zone)} ({schedule.timezone}) by host "
                     f"{done.host} at {local_time(done.started_at, schedule.zone)}")
    return latest
