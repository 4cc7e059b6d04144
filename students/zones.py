"""Each user's own time zone (issue 15, part 3): per-user mode logs each user out at the schedule's
local times in their own zone.

Switched on with the schedule (`logout_schedule --set ... --per-user-zones`,
LogoutSchedule.per_user_zones), never by a setting of its own.

- The zone is stored on the user (UserTimeZone), first filled from the browser's zone at login and
  changed on the time-zone page, always checked against the IANA list. At login it is copied into
  the session (selection.ZONE_KEY), so the cutoff middleware and the warning banner read it with no
  query. A user without one follows the schedule's zone (the one in force at login is stamped).
- A change takes effect only at the next logout in the zone in effect (UserTimeZone.next_zone_from),
  and a session keeps the zone it logged in with. So every session ends at the first scheduled time
  of its own zone after its login: none lives longer than 24 hours (plus that day's daylight-saving
  shift), and switching zones cannot put a logout off.
- Scheduled runs fire hourly and stand for the zones whose time has passed since the last run
  (students.due.due_at, from the zones in use: zones_in_use). Each deletes only the sessions of the
  users in those zones that began before that zone's time (restricted): a user in another zone is
  kept, and an anonymous session goes with the schedule's own zone. Such a run sets no site-wide
  cutoff: each zone's clock cutoff already ends its sessions (students.clock).
- The warning banner counts down to the user's own time, and pages show times in their zone
  (students.middleware activates it).
"""
from dataclasses import replace

from django.db import transaction

from students.models import UserTimeZone
from students.schedule import check_zone, zone_info
from students.selection import ZONE_KEY


# --- the user's zone ------------------------------------------------------------------------------

def zone_in_effect(user, moment):
    """The user's zone at `moment` ("": none set, the schedule's zone applies). One query."""
    row = UserTimeZone.objects.filter(user=user).first()
    return row.zone_at(moment) if row else ""


def stamp(session, user, now, schedule):
    """At login: copy the zone in effect into the session (what the session is logged out by); for a
    user without one, the schedule's, so a later change of the schedule's zone cannot move it."""
    session[ZONE_KEY] = zone_in_effect(user, now) or (schedule.timezone if schedule else "")


def change(user, name, now, schedule):
    """Set the user's zone to `name` (IANA, checked; "" back to the schedule's). Returns when it takes
    effect: `now` with no schedule, else the next scheduled time in the zone in effect, so the
    sessions running now still end at their own zone's time. Raises schedule.ZoneError."""
    if name:
        check_zone(name)
    with transaction.atomic():
        row, _ = UserTimeZone.objects.select_for_update().get_or_create(user=user)
        current = row.zone_at(now)
        row.zone, row.next_zone, row.next_zone_from = current, "", None  # a pending change that has passed
        if name != current:
            if schedule is None:
                row.zone = name
            else:
                row.next_zone = name
                row.next_zone_from = schedule.next_instant(now, zone_info(current) or schedule.zone)
        row.save()
    return row.next_zone_from or now


def fill_from_browser(user, name, now, schedule):
    """At login: a user with no zone yet gets the browser's (if it is on the IANA list), taking effect
    as any change does. Returns True when it was recorded."""
    if not name or zone_info(name) is None:
        return False
    row = UserTimeZone.objects.filter(user=user).first()
    if row is not None and (row.zone or row.next_zone):
        return False
    change(user, name, now, schedule)
    return True


# --- which users are in which zone ----------------------------------------------------------------

def zones_in_use(schedule):
    """Every zone a session may be logged out by: the schedule's, and each user's current or next."""
    names = {schedule.timezone}
    for zone, next_zone in UserTimeZone.objects.values_list("zone", "next_zone").distinct():
        names.update(name for name in (zone, next_zone) if zone_info(name) is not None)
    return sorted(names)


def restricted(keep, instant, names, schedule):
    """The run's keep rule narrowed to one group: the sessions of users whose zone at `instant` is
    one of `names` go (those without a zone follow the schedule's, as do anonymous sessions); every
    other user's are kept."""
    wanted = set(names)
    others, chosen = set(), set()
    for user_id, zone, next_zone, next_from in UserTimeZone.objects.values_list(
            "user_id", "zone", "next_zone", "next_zone_from"):
        # A switch at `instant` itself still counts the old zone: that zone's run is the one at the switch.
        effective = next_zone if next_from is not None and next_from < instant else zone
        effective = effective if zone_info(effective) is not None else schedule.timezone
        (chosen if effective in wanted else others).add(str(user_id))
    if schedule.timezone in wanted:
        return replace(keep, user_ids=keep.user_ids | others)
    return replace(keep, only_user_ids=frozenset(chosen), keep_anonymous=True)
