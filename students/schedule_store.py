"""The recorded logout schedule: read (cache, then database), recorded, cleared, published to the cache.

The schedule (local times, a zone, who is kept, which scheduler cleans storage) is recorded in the
database by `manage.py logout_schedule` (students.models.LogoutSchedule) and read back as a
students.schedule.Schedule. Recording or clearing it keeps the clock cutoffs in force at that moment
(own_cutoff; per zone in per-user mode: zone_cutoffs) with the new row, so changing or clearing never
forgives a cutoff that had already passed, and recording never logs anyone out on the spot.

Cost of a read: one cache read (read_stored; students.clock.read_state reads it together with the
run cutoff); on a miss (every CACHE_SECONDS per process with locmem) one indexed query. Each stored
row is parsed once per process (parsed_schedule).
"""
import json
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from students import cutoff, zones
from students.cutoff import Cutoff
from students.models import LogoutSchedule
from students.schedule import Schedule, ScheduleError, parse_due_at, parse_zone, zone_info
from students.selection import resolve_keep_rule

SCHEDULERS = tuple(LogoutSchedule.Scheduler.values)
CACHE_KEY = "students:logout_schedule"
WARN_MINUTES_MAX = 720  # the warning banner shows at most 12 hours ahead
MAX_SESSION_AGE_HOURS_MAX = 8760  # a year


# --- reading it -----------------------------------------------------------------------------------

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


def read_stored(cached=None):
    """The stored row as a Schedule (times may be empty: cleared), or None when nothing is stored.
    `cached`: the cache's value when the caller already read it (students.clock.read_state)."""
    if cached is None:
        cached = cache.get(CACHE_KEY)
        if cached is None:
            cached = _load_value()
    return _schedule_from(cached)


def recorded_schedule():
    """The recorded Schedule, or None. Cached like students.cutoff (one cache read; on a miss, one
    indexed query)."""
    state = read_stored()
    return state if state is not None and state.times else None


def stored_schedule():
    """The recorded Schedule read from the database itself, not the cache (for commands), or None."""
    state = _schedule_from(_as_cache_value(LogoutSchedule.objects.current().first()))
    return state if state is not None and state.times else None


# --- the clock cutoffs it sets (kept with the next schedule when it changes) ----------------------

def own_cutoff(schedule, now, zone=None):
    """The schedule's clock cutoff at `now` (in `zone` for per-user mode): its latest passed instant
    after R, or None."""
    latest = schedule.latest_instant(now, zone)
    if latest is None or latest <= schedule.recorded_at:
        return None
    return Cutoff(at=latest.timestamp(), kept_user_ids=schedule.kept_user_ids, keep_staff=schedule.keep_staff,
                  keep_remembered=schedule.keep_remembered)


def zone_cutoffs(schedule, now):
    """Per-user mode: each zone in use's own clock cutoff, tagged with its zone (the sessions it ends)."""
    return [replace(c, zone=name) for name in zones.zones_in_use(schedule)
            for c in [own_cutoff(schedule, now, zone_info(name))] if c is not None]


def _previous(state, now):
    """The cutoffs in force at `now` under the stored state, one per set of keep rules (the latest)."""
    if state is None:
        return ()
    if state.per_user_zones:
        own = zone_cutoffs(state, now)
    else:
        own = [c for c in [own_cutoff(state, now)] if c is not None]
    latest = {}
    for c in (*state.previous_cutoffs, *own):
        rules = (c.keep_staff, c.keep_remembered, c.kept_user_ids, c.zone)
        if rules not in latest or latest[rules].at < c.at:
            latest[rules] = c
    return tuple(sorted(latest.values(), key=lambda c: c.at))


# --- recording and clearing it --------------------------------------------------------------------

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
