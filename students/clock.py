"""The clock cutoffs in force at a request: those the recorded schedule sets, whether or not any job ran.

From the recorded schedule (students.schedule_store) the site knows every scheduled instant: each
local time on each local date, with students.schedule.target_instant deciding daylight-saving days
(a time in a spring-forward gap happens at the end of the gap; one that happens twice counts once,
at its first occurrence), so no day is doubled or missed.

Clock cutoffs (students.cutoff.Cutoff): the latest scheduled instant that has passed, if it is later
than the schedule's recording time R, with the schedule's keep rules (students.schedule_store.own_cutoff);
plus the cutoffs that were in force when the schedule was recorded, changed or cleared (stored with
it). The middleware enforces them at each authenticated request (read_state).

Per-user mode (students.zones): the instants are each session's own zone's, the zone stamped in the
session at login; a cutoff kept from such a schedule applies to its zone's sessions only (in_force).

Cost on the request path (read_state): one cache round trip for the run cutoff and the schedule
together; on a miss (every CACHE_SECONDS per process with locmem) one indexed query each. Each stored
schedule is parsed once per process (students.schedule_store.parsed_schedule), and its computed
cutoffs are remembered on it (per zone, Schedule.windows) until the next scheduled instant passes,
so a request pays a comparison, not a calculation. Anonymous requests never get here.

What a request read lives on the request: the cutoff middleware puts the schedule it enforced there
(schedule_for), and the warning banner (students.warning), which counts down to the next scheduled
instant (next_instant_at, remembered with the cutoffs), and the page's zone (display_zone) use that
read: no second cache round trip, and never the read of another request served at the same time.
"""
from dataclasses import dataclass

from django.core.cache import cache

from students import cutoff, schedule_store
from students.cutoff import Cutoff
from students.schedule import Schedule
from students.schedule_store import own_cutoff, recorded_schedule
from students.selection import ZONE_KEY


def in_force(schedule, now, session_zone=None):
    """Every clock cutoff of `schedule` in force at `now` (Cutoff, oldest first) for a session logged
    out by `session_zone` ((name, ZoneInfo) from session_zone; default the schedule's): in
    per-user mode its own cutoff is that zone's, and a previous cutoff kept for another zone is left
    out."""
    name, zone = session_zone or (schedule.timezone, schedule.zone)
    own = own_cutoff(schedule, now, zone if schedule.per_user_zones else None)
    return tuple(c for c in schedule.previous_cutoffs if c.zone in ("", name)) + ((own,) if own else ())


def for_everyone(schedule, now):
    """The clock cutoffs of `schedule` that end every session whatever its zone (the site's own
    cleanup)."""
    own = None if schedule.per_user_zones else own_cutoff(schedule, now)
    return tuple(c for c in schedule.previous_cutoffs if not c.zone) + ((own,) if own else ())


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


def session_zone(schedule, session):
    """The zone (name, ZoneInfo) that logs out `session` in per-user mode: the one stamped at its
    login, else (or with no session) the schedule's."""
    return schedule.zone_named(session.get(ZONE_KEY) or "" if session is not None else "")


def display_zone(schedule, session):
    """In per-user mode, the zone pages show this session's times in (its own); else None (the
    site's)."""
    return session_zone(schedule, session)[1] if schedule is not None and schedule.per_user_zones else None


def _window_at(schedule, now, session=None):
    by_zone = schedule.windows
    zone_name, zone = session_zone(schedule, session)
    stamp = now.timestamp()
    window = by_zone.get(zone_name)
    if window is not None and window[0] <= stamp < window[1]:
        return window
    own_zone = zone if schedule.per_user_zones else None
    latest, coming = schedule.latest_instant(now, own_zone), schedule.next_instant(now, own_zone)
    window = (latest.timestamp() if latest else float("-inf"), coming.timestamp() if coming else float("inf"),
              in_force(schedule, now, (zone_name, zone)))
    by_zone[zone_name] = window
    return window


def clock_cutoffs(schedule, now, session=None):
    """in_force(schedule, now) for this session's zone, remembered until its next scheduled instant."""
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
            return found + (for_everyone(self.stored, now) if self.stored is not None else ())
        found += self.users
        if self.stored is None:
            return found
        hours = self.stored.max_session_age_hours
        max_age = (cutoff.max_age_cutoff(hours, now),) if hours else ()
        return found + max_age + clock_cutoffs(self.stored, now, session)


def read_state():
    """The run cutoff and the schedule in one cache round trip; on a miss, one indexed query for the
    missing one."""
    values = cache.get_many([cutoff.CACHE_KEY, schedule_store.CACHE_KEY])
    run_value = values.get(cutoff.CACHE_KEY)
    run_value = run_value if run_value is not None else cutoff.load_value()
    return State(run=cutoff.from_cache_value(run_value),
                 stored=schedule_store.read_stored(values.get(schedule_store.CACHE_KEY)),
                 users=cutoff.user_cutoffs(run_value))


def cutoffs_in_force(now, session=None):
    """read_state().cutoffs(now, session): every cutoff in force at `now` on `session`."""
    return read_state().cutoffs(now, session)
