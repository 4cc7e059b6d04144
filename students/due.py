"""What a --scheduled run fired at `now` stands for (due_at), decided under the cluster lock.

A run stands for the latest scheduled instant that has passed since the schedule was recorded and
that no successful run stands for yet, so extra firings of the scheduler do nothing
(students.schedule.firing_times). The answer is one type, Due: groups of zones whose scheduled time
passed at the same instant. A site-wide schedule is one group, its own zone; in per-user time zone
mode (students.zones) each group is the zones whose time has passed since the last run, and the run
deletes only the sessions of those zones' users, each group for its own instant
(students.zones.restricted). Such a run sets no site-wide cutoff: each zone's clock cutoff already
ends its sessions (students.clock).
"""
from dataclasses import dataclass
from datetime import timedelta

from students import zones
from students.models import LogoutRun
from students.schedule import Schedule, local_time, zone_info
from students.schedule_store import stored_schedule


class NoSchedule(Exception):
    """A --scheduled run on a site with no recorded schedule."""


class NotDue(Exception):
    """Raised by a scheduled run's guard (due_at, under the lock) to stop it; the message says why."""


@dataclass(frozen=True)
class Due:
    """What a --scheduled run stands for: groups of zones whose scheduled time passed at the same
    instant, oldest first: ((instant, (zone name, ...)), ...), under `schedule`."""

    schedule: Schedule
    groups: tuple

    @property
    def stands_for(self):
        """The instant the run stands for (LogoutRun.stands_for): the latest group's."""
        return self.groups[-1][0]

    def record(self):
        """LogoutRun.zones: {zone: ISO instant} for a per-user time zone run; None for a site-wide
        one, whose record sets the site-wide cutoff (LogoutRun.objects.site_wide())."""
        if not self.schedule.per_user_zones:
            return None
        return {name: instant.isoformat() for instant, names in self.groups for name in names}

    def purges(self, keep):
        """(instant, keep rule) of each purge the run makes: the sessions that began before the
        instant go, unless the rule keeps them. Site-wide: `keep` as it is; per-user time zones:
        narrowed to the group's users (students.zones.restricted), read as each purge comes."""
        for instant, names in self.groups:
            rule = zones.restricted(keep, instant, names, self.schedule) if self.schedule.per_user_zones else keep
            yield instant, rule


def due_at(now):
    """What a run fired at `now` stands for (Due). Raises NoSchedule, or NotDue when no instant has
    passed since the recording or a successful run already stands for it. Read from the database:
    call it under the cluster lock."""
    schedule = stored_schedule()
    if schedule is None:
        raise NoSchedule("no logout schedule is recorded; record it first with "
                         "`manage.py logout_schedule --set HH:MM --timezone ZONE`")
    groups = _zone_groups(schedule, now) if schedule.per_user_zones else _site_wide_group(schedule, now)
    return Due(schedule=schedule, groups=groups)


def _site_wide_group(schedule, now):
    """The schedule's latest instant that has passed since it was recorded and that no site-wide run
    stands for yet, as the one group (its own zone)."""
    latest = schedule.latest_instant(now)
    if latest is None or latest <= schedule.recorded_at:
        coming = schedule.next_instant(now)
        raise NotDue(f"Not due: no scheduled time has passed since the schedule was recorded at "
                     f"{local_time(schedule.recorded_at, schedule.zone)}; the first is {local_time(coming, schedule.zone)}")
    done = LogoutRun.objects.successful().site_wide().filter(stands_for__gte=latest).first()
    if done is not None:
        raise NotDue(f"Already logged out for {local_time(latest, schedule.zone)} ({schedule.timezone}) by host "
                     f"{done.host} at {local_time(done.started_at, schedule.zone)}")
    return ((latest, (schedule.timezone,)),)


def _zone_groups(schedule, now):
    """Per-user mode: the zones whose latest scheduled time has passed since the schedule was recorded
    and no successful run stands for yet, grouped by that time."""
    recent = LogoutRun.objects.successful().filter(started_at__gte=now - timedelta(days=3))
    # A run for some users alone (--user) covers nobody else.
    covered_by_all = max((run.cutoff_at for run in recent if run.zones is None and run.only_user_ids is None),
                         default=None)
    covered = {}
    for run in recent.exclude(zones__isnull=True):
        for name, instant in run.zones.items():
            covered[name] = max(covered.get(name, instant), instant)  # ISO UTC strings sort as times
    groups, coming = {}, []
    for name in zones.zones_in_use(schedule):
        zone = zone_info(name)
        latest = schedule.latest_instant(now, zone)
        coming.append((schedule.next_instant(now, zone), name))
        if latest is None or latest <= schedule.recorded_at:
            continue
        if (covered_by_all is not None and covered_by_all >= latest) or covered.get(name, "") >= latest.isoformat():
            continue
        groups.setdefault(latest, []).append(name)
    if not groups:
        at, name = min(coming)
        raise NotDue(f"Not due: every zone's latest logout time has a run; the next is "
                     f"{local_time(at, zone_info(name))} ({name})")
    return tuple((instant, tuple(names)) for instant, names in sorted(groups.items()))
