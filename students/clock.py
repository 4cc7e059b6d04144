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

Cost on the request path (cutoffs_in_force): one cache round trip for the run cutoff and the
schedule together; on a miss (every CACHE_SECONDS per process with locmem) one indexed query each.
The computed cutoffs are remembered per process until the next scheduled instant passes, so a
request pays a comparison, not a calculation. Anonymous requests never get here.

The warning banner (students.warning) counts down to the next scheduled instant (next_instant_at,
remembered with the cutoffs) and reuses the schedule the middleware read (schedule_last_read).
"""
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from students import cutoff
from students.cutoff import Cutoff
from students.models import LogoutRun, LogoutSchedule
from students.schedule import NotDue, ScheduleError, parse_due_at, parse_zone, target_instant
from students.selection import resolve_keep_rule

SCHEDULERS = tuple(LogoutSchedule.Scheduler.values)
CACHE_KEY = "students:logout_schedule"
DAY = timedelta(days=1)
WARN_MINUTES_MAX = 720  # the warning banner shows at most 12 hours ahead


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
    previous_cutoffs: tuple = ()             # Cutoff, in force when this was recorded
    zone: ZoneInfo = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.zone is None and self.timezone:
            object.__setattr__(self, "zone", ZoneInfo(self.timezone))

    def instants_on(self, day):
        """The scheduled instants (aware UTC) of local date `day`, in order, each once."""
        return sorted({target_instant(day, at, self.zone) for at in self.times})

    def latest_instant(self, now):
        """The latest scheduled instant at or before `now` (aware), as an aware UTC datetime."""
        if not self.times:
            return None
        day = now.astimezone(self.zone).date()
        for back in range(3):  # a local date's instants lie on that date; two days back is plenty
            passed = [s for s in self.instants_on(day - back * DAY) if s <= now]
            if passed:
                return passed[-1]
        return None

    def next_instant(self, now):
        """The first scheduled instant after `now` (aware): what a warning banner counts down to."""
        if not self.times:
            return None
        day = now.astimezone(self.zone).date()
        for ahead in range(3):
            coming = [s for s in self.instants_on(day + ahead * DAY) if s > now]
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

    def own_cutoff(self, now):
        """This schedule's clock cutoff at `now`: its latest passed instant after R, or None."""
        latest = self.latest_instant(now)
        if latest is None or latest <= self.recorded_at:
            return None
        return Cutoff(at=latest.timestamp(), kept_user_ids=self.kept_user_ids, keep_staff=self.keep_staff,
                      keep_remembered=self.keep_remembered)

    def in_force(self, now):
        """Every clock cutoff in force at `now` (Cutoff, oldest first)."""
        own = self.own_cutoff(now)
        return self.previous_cutoffs + ((own,) if own else ())

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
        "keep_remembered": row.keep_remembered,
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
    )
    _parsed = (row, schedule)
    return schedule


def _cutoff_from(stored):
    return Cutoff(at=datetime.fromisoformat(stored["at"]).timestamp(),
                  kept_user_ids=frozenset(stored["kept_user_ids"]), keep_staff=stored["keep_staff"],
                  keep_remembered=stored.get("keep_remembered", False))


def _cutoff_to(c):
    return {"at": datetime.fromtimestamp(c.at, UTC).isoformat(), "keep_staff": c.keep_staff,
            "keep_remembered": c.keep_remembered, "kept_user_ids": sorted(c.kept_user_ids)}


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


# Per process: the clock cutoffs computed for the last schedule seen, valid from its latest passed
# instant until its next one (epoch seconds).
_window = (None, 0.0, 0.0, ())


def _window_at(schedule, now):
    global _window
    seen, start, end, cutoffs = _window
    stamp = now.timestamp()
    if seen is schedule and start <= stamp < end:
        return _window
    latest, coming = schedule.latest_instant(now), schedule.next_instant(now)
    _window = (schedule, latest.timestamp() if latest else float("-inf"),
               coming.timestamp() if coming else float("inf"), schedule.in_force(now))
    return _window


def clock_cutoffs(schedule, now):
    """schedule.in_force(now), remembered until the next scheduled instant passes."""
    return _window_at(schedule, now)[3]


def next_instant_at(schedule, now):
    """schedule.next_instant(now) in epoch seconds (inf: none), remembered like clock_cutoffs:
    what the warning banner counts down to."""
    return _window_at(schedule, now)[2]


def cutoffs_in_force(now):
    """Every cutoff the middleware enforces at `now`: the latest run's and the clock's.
    One cache round trip for both; on a miss, one indexed query for the missing one."""
    values = cache.get_many([cutoff.CACHE_KEY, CACHE_KEY])
    run_value = values.get(cutoff.CACHE_KEY)
    run = cutoff.from_cache_value(run_value if run_value is not None else cutoff.load_value())
    schedule = _state(values.get(CACHE_KEY))
    found = (run,) if run is not None else ()
    return found + clock_cutoffs(schedule, now) if schedule is not None else found


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
    latest = {}
    for c in state.in_force(now):
        rules = (c.keep_staff, c.keep_remembered, c.kept_user_ids)
        if rules not in latest or latest[rules].at < c.at:
            latest[rules] = c
    return tuple(sorted(latest.values(), key=lambda c: c.at))


def record_schedule(main, also=(), *, zone_name, scheduler="cron", keep_staff=False, exclude_users=(),
                    warn_minutes=0, keep_remembered=False, check=False):
    """Record (or with check=True, only compare) the schedule. Returns (changed, Schedule).
    Raises ScheduleError (bad time, zone, scheduler or warning minutes) or selection.UnknownUsers."""
    times = parse_times(main, also)
    zone = parse_zone(zone_name)
    if scheduler not in SCHEDULERS:
        raise ScheduleError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}")
    if warn_minutes != 0 and not 1 <= warn_minutes <= WARN_MINUTES_MAX:
        raise ScheduleError(f"--warn-minutes must be a whole number from 1 to {WARN_MINUTES_MAX}, not {warn_minutes!r}")
    keep = resolve_keep_rule(exclude_users, False)
    wanted = dict(times=[f"{t:%H:%M}" for t in times], timezone=str(zone), scheduler=scheduler,
                  keep_staff=keep_staff, excluded_usernames=list(keep.usernames), kept_user_ids=keep.kept_ids,
                  warn_minutes=warn_minutes, keep_remembered=keep_remembered)
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
    the schedule was recorded. Raises NoSchedule, or schedule.NotDue when no instant has passed
    since the recording or a successful run already stands for it. Read from the database: call it
    under the cluster lock."""
    schedule = stored_schedule()
    if schedule is None:
        raise NoSchedule("no logout schedule is recorded; record it first with "
                         "`manage.py logout_schedule --set HH:MM --timezone ZONE`")
    latest = schedule.latest_instant(now)
    if latest is None or latest <= schedule.recorded_at:
        coming = schedule.next_instant(now)
        raise NotDue(f"Not due: no scheduled time has passed since the schedule was recorded at "
                     f"{_local(schedule.recorded_at, schedule.zone)}; the first is {_local(coming, schedule.zone)}")
    done = (LogoutRun.objects.filter(outcome=LogoutRun.Outcome.SUCCESS, stands_for__gte=latest)
            .order_by("-started_at").first())
    if done is not None:
        raise NotDue(f"Already logged out for {_local(latest, schedule.zone)} ({schedule.timezone}) by host "
                     f"{done.host} at {_local(done.started_at, schedule.zone)}")
    return latest


def _local(instant, zone):
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
