"""The logout cutoff: the mechanism that logs users out on every session engine.

Each successful logout run records its cutoff: when it started (LogoutRun.started_at), or for
a scheduled run the instant it stands for (LogoutRun.stands_for). A session whose user logged
in before the latest such cutoff is ended at its next request by
students.middleware.LogoutCutoffMiddleware, unless the run kept that user (--exclude-user,
--keep-staff) or, with --keep-remembered, the session is a "keep me signed in" one (its marker,
in session data only the server writes: no query per request). This is what logs out
signed_cookies sessions, which the server cannot delete, and it closes the small races the purge
leaves on the other engines. The clock cutoffs of a
recorded schedule (students.clock) are enforced the same way, even when no run happened.

The login time is written into the session at login (students.signals.remember_login_time). A
session with no login time (made before this app was installed), or one stamped further ahead of
this host's clock than selection.FUTURE_LOGIN_TOLERANCE_SECONDS (by a web host whose clock runs
fast), counts as older than any cutoff (selection.logged_in_before).
"""
from dataclasses import dataclass

from django.core.cache import cache

from students.models import LogoutRun
from students.selection import LOGIN_TIME_KEY, REMEMBERED_KEY, logged_in_before  # noqa: F401  (LOGIN_TIME_KEY: benchmarks read it here)

CACHE_KEY = "students:logout_cutoff"
# How stale a web process's view of the cutoff may be. With a per-process cache (locmem) a new
# cutoff written by the command in another process is seen within this many seconds; with a
# shared cache (Redis) the command writes it there and it is seen at once.
CACHE_SECONDS = 5


@dataclass(frozen=True)
class Cutoff:
    at: float  # epoch seconds
    kept_user_ids: frozenset = frozenset()
    keep_staff: bool = False
    keep_remembered: bool = False
    # Only for sessions logged out by this zone (a per-user time zone schedule's cutoff, kept when the
    # schedule was changed: students.clock.zone_cutoffs); "": every session.
    zone: str = ""

    def ends(self, session, user):
        """True when this authenticated session must be logged out."""
        if str(user.pk) in self.kept_user_ids or (self.keep_staff and user.is_staff):
            return False
        if self.keep_remembered and session.get(REMEMBERED_KEY) is True:
            return False
        return logged_in_before(session, self.at)


def _as_cache_value(run):
    if run is None:
        return {"at": None}
    return {"at": run.cutoff_at.timestamp(), "kept": [str(i) for i in run.kept_user_ids],
            "keep_staff": run.keep_staff, "keep_remembered": run.keep_remembered}


def from_cache_value(value):
    if value["at"] is None:
        return None
    return Cutoff(at=value["at"], kept_user_ids=frozenset(value["kept"]), keep_staff=value["keep_staff"],
                  keep_remembered=value.get("keep_remembered", False))  # cached before migration 0004: none


def latest_run():
    """The successful run whose cutoff is the latest (a late scheduled run stands for an earlier
    instant than its start, so the newest run is not always the latest cutoff)."""
    return LogoutRun.objects.successful().site_wide().latest_cutoff_first().first()


def load_value():
    """Read the latest run cutoff from the database into the cache; return the cached value."""
    value = _as_cache_value(latest_run())
    cache.set(CACHE_KEY, value, CACHE_SECONDS)
    return value


def publish(run):
    """After `run` finished: put the latest cutoff into the cache so this cache's readers see it
    now. That is `run`'s unless it was a late scheduled run standing for an earlier instant than
    a run before it, or a per-user time zone run, which sets none (hence the query)."""
    cache.set(CACHE_KEY, _as_cache_value(latest_run()), CACHE_SECONDS)
