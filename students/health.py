"""Is the nightly logout healthy? One answer for the health URL, `manage.py check` and the admin.

What must keep happening depends on the recorded schedule's scheduler:
- cron, systemd, pythonanywhere: a successful logout run at least once per the schedule's
  period() plus GRACE. A run counts from when it really started (LogoutRun.started_at), not the
  instant it stands for: a PythonAnywhere task at a fixed UTC hour may stand for an instant many
  hours before it, yet succeeds every 24 hours.
- none: the site's own storage cleanup (students.cleanup), which runs after signed-in requests,
  at most once per CLEANUP_INTERVAL. A quiet site (nobody signing in overnight) grows no storage
  and has nothing to clean, so a stale last_cleanup() alone is no fault: the cleanup is overdue
  once someone signed in at least CLEANUP_INTERVAL after the last cleanup and GRACE has passed
  since without one (users' last_login is the witness).
The clock starts at the last success, or at the schedule's recording when that is later, so a new
or changed schedule gets one full period before its first run is due. Once that deadline has passed
the logout is overdue (the health URL answers 503).

In per-user time zone mode the scheduler fires every hour and most firings find nothing due, so
successes may be a day apart while a scheduler that stopped must show within two hours, not a day.
Every scheduled firing asks whether a run is due first (`logout_all_users --scheduled --check-due`,
which calls record_firing()), due or not; the logout is also overdue once no firing came for
FIRING_PERIOD + FIRING_GRACE.

With no schedule recorded the site promises no time, so nothing can be overdue: the status is
"unscheduled" (HTTP 200). The role always records one, so a monitor that matches the body sees a
schedule that went missing; a 503 there would page the owners of every site that removed the job
on purpose (`state: absent`) or never had one.
"""
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Min
from django.utils import timezone

from students import cleanup, schedule_store
from students.models import LogoutRun, LogoutSchedule

logger = logging.getLogger(__name__)

# How late a success may be beyond the period before it counts as overdue. period() is measured on
# the wall clock, so a daily schedule's real gap is 25 hours on the day summer time ends (1 h);
# the other hour covers a scheduler that starts late (PythonAnywhere's tasks, systemd catching up
# at boot shortly after) and the run itself (seconds at a million sessions, docs/benchmarks.md).
# A missed night is still reported hours before the next scheduled run. With scheduler none a
# cleanup follows a sign-in within about a minute (students.cleanup.CHECK_SECONDS): ample there.
GRACE = timedelta(hours=2)

# Per-user time zone mode: the scheduler fires hourly (cron `M * * * *`, a systemd timer `*:MM`, an
# hourly PythonAnywhere task). An hour of grace covers a firing that starts late (PythonAnywhere,
# systemd at boot); cron fires every hour across daylight-saving changes too. So a stopped scheduler
# is overdue two hours after its last firing.
FIRING_PERIOD = timedelta(hours=1)
FIRING_GRACE = timedelta(hours=1)

# Monitors poll the URL every minute or so; a cached answer costs them one cache read, no query.
CACHE_KEY = "students:logout_health"
CACHE_SECONDS = 15

OK, OVERDUE, UNSCHEDULED = "ok", "overdue", "unscheduled"
UNKNOWN = "unknown"  # the health URL could not read the database (HTTP 503)
HEALTHY = (OK, UNSCHEDULED)  # the statuses the health URL answers with 200

# The health URL's JSON body: exactly these keys, times as ISO 8601 in UTC or null. No usernames,
# hosts or settings: the URL needs no login.
KEYS = ("status", "scheduler", "last_success", "next_due", "overdue_since")


@dataclass(frozen=True)
class Health:
    status: str                    # ok, overdue or unscheduled
    scheduler: str | None          # the recorded schedule's scheduler; None when unscheduled
    last_success: datetime | None  # last successful run (scheduler none: last cleanup)
    next_due: datetime | None      # next scheduled instant (scheduler none: when the next cleanup is due)
    overdue_since: datetime | None  # when it became overdue; None while healthy
    # Not in the JSON body. Per-user time zone mode: the last scheduled firing, and whether the
    # missing firing (not a missing success) is what made it overdue.
    last_fired: datetime | None = None
    firing_missing: bool = False

    @property
    def overdue(self):
        return self.status == OVERDUE

    @property
    def hint(self):
        if self.scheduler == "none":
            return ("With scheduler none the site cleans its session storage after signed-in requests; look "
                    "for 'Site cleanup' errors in the site's application log (stderr).")
        return (f"Is the {self.scheduler} job still scheduled and does it succeed? See its log (by default "
                "~/logs/daily_logout.log of the site user), the runs under /admin/ and "
                "`manage.py logout_schedule --show`.")

    @property
    def summary(self):
        """One sentence for people (the check's warning, the admin's banner); empty while healthy."""
        if not self.overdue:
            return ""
        if self.firing_missing:
            last = f"the last at {_when(self.last_fired)}" if self.last_fired else "none since the schedule was recorded"
            return (f"The nightly logout (scheduler {self.scheduler}) is overdue since {_when(self.overdue_since)}: "
                    f"the hourly firing of per-user time zone mode is missing ({last}).")
        what = "the site's own session cleanup" if self.scheduler == "none" else "a successful run"
        last = f"the last at {_when(self.last_success)}" if self.last_success \
            else "none since the schedule was recorded"
        return (f"The nightly logout (scheduler {self.scheduler}) is overdue since "
                f"{_when(self.overdue_since)}: {what} is missing ({last}).")

    def as_json(self):
        return {key: _iso(getattr(self, key)) for key in KEYS}


def _when(value):
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def last_success():
    """When the newest successful logout run started (one indexed query), or None."""
    return (LogoutRun.objects.successful().excluding_named_users()
            .order_by("-started_at").values_list("started_at", flat=True).first())


def last_firing():
    """When a scheduled firing last asked whether a run was due (one query), or None."""
    return LogoutSchedule.objects.current().values_list("last_fired_at", flat=True).first()


def record_firing(at):
    """A scheduled firing happened at `at` (called by `logout_all_users --scheduled --check-due`)."""
    LogoutSchedule.objects.current().update(last_fired_at=at)


def logout_health(at=None):
    """The logout's health at `at` (default: now), read fresh from the database."""
    at = at or timezone.now()
    schedule = schedule_store.recorded_schedule()
    if schedule is None:
        return Health(UNSCHEDULED, None, last_success(), None, None)
    if schedule.scheduler == "none":
        return _cleanup_health(schedule, at)
    last = last_success()
    since = max(last, schedule.recorded_at) if last else schedule.recorded_at
    deadline = since + schedule.period() + GRACE
    overdue = deadline if at >= deadline else None
    fired, firing_missing = None, False
    if schedule.per_user_zones:
        fired = last_firing()
        firing_deadline = max(fired or schedule.recorded_at, schedule.recorded_at) + FIRING_PERIOD + FIRING_GRACE
        if at >= firing_deadline and (overdue is None or firing_deadline < overdue):
            overdue, firing_missing = firing_deadline, True
    return Health(OVERDUE if overdue else OK, schedule.scheduler, last, schedule.next_instant(at), overdue,
                  fired, firing_missing)


def _cleanup_health(schedule, at):
    last = cleanup.last_cleanup()
    since = max(last, schedule.recorded_at) if last else schedule.recorded_at
    next_due = since + cleanup.CLEANUP_INTERVAL  # the first moment a signed-in request may start a new turn
    # The earliest sign-in that must have led to a cleanup (one query on the users' table): a web
    # process looks at most once per CHECK_SECONDS, so a sign-in that soon after next_due may not.
    witness = (get_user_model()._default_manager
               .filter(last_login__gte=next_due + timedelta(seconds=cleanup.CHECK_SECONDS))
               .aggregate(first=Min("last_login"))["first"])
    overdue = witness + GRACE if witness and at >= witness + GRACE else None
    return Health(OVERDUE if overdue else OK, schedule.scheduler, last, next_due, overdue)


def cached_health_json():
    """logout_health().as_json(), shared through the cache for CACHE_SECONDS."""
    body = cache.get(CACHE_KEY)
    if body is None:
        body = logout_health().as_json()
        cache.set(CACHE_KEY, body, CACHE_SECONDS)
    return body
