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
from students.selection import REMEMBERED_KEY, logged_in_before

SPARED_BY_KEY = "_students_spared_by_run"  # set by students.session_index.end_other_sessions

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
    # schedule was changed: students.schedule_store.zone_cutoffs); "": every session.
    zone: str = ""

    def ends(self, session, user):
        """True when this authenticated session must be logged out."""
        if str(user.pk) in self.kept_user_ids or (self.keep_staff and user.is_staff):
            return False
        if self.keep_remembered and session.get(REMEMBERED_KEY) is True:
            return False
        return logged_in_before(session, self.at)


@dataclass(frozen=True)
class UserCutoffs:
    """The cutoffs of runs that logged out some users alone (`logout_all_users --user`, the user
    admin's action, "Sign out my other sessions": students.session_index): {str(pk): (epoch
    seconds, run id)}, the latest run of each user. No keep rule spares them; only the session
    that asked for its user's other sessions to end carries that run's id (SPARED_BY_KEY)."""

    by_user: dict

    def ends(self, session, user):
        found = self.by_user.get(str(user.pk))
        if found is None:
            return False
        at, run_id = found
        return session.get(SPARED_BY_KEY) != run_id and logged_in_before(session, at)


def max_age_cutoff(hours, now):
    """The schedule's maximum session age (OWASP ASVS 7.3.2) as a cutoff at `now`: a session that
    logged in more than `hours` ago ends, whoever's and remembered or not."""
    return Cutoff(at=now.timestamp() - hours * 3600)


def _as_cache_value(run, users=None):
    users = {} if users is None else users
    if run is None:
        return {"at": None, "users": users}
    return {"at": run.cutoff_at.timestamp(), "kept": [str(i) for i in run.kept_user_ids],
            "keep_staff": run.keep_staff, "keep_remembered": run.keep_remembered, "users": users}


def user_cutoffs(value):
    """The cached value's UserCutoffs, as a tuple to add to the cutoffs in force (empty: none)."""
    users = value.get("users")  # cached before migration 0008: none
    return (UserCutoffs(by_user={uid: tuple(found) for uid, found in users.items()}),) if users else ()


def _latest_user_runs():
    """{str(pk): [epoch seconds, run id]} of the latest successful run that logged out each user alone."""
    found = {}
    runs = (LogoutRun.objects.successful().for_named_users()
            .order_by("started_at").values_list("only_user_ids", "started_at", "pk"))
    for user_ids, started_at, pk in runs:
        for uid in user_ids:
            found[str(uid)] = [started_at.timestamp(), pk]
    return found


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
    value = _as_cache_value(latest_run(), _latest_user_runs())
    cache.set(CACHE_KEY, value, CACHE_SECONDS)
    return value


def publish(run):
    """After `run` finished: put the latest cutoff into the cache so this cache's readers see it
    now. That is `run`'s unless it was a late scheduled run standing for an earlier instant than
    a run before it, or a per-user time zone run, which sets none (hence the query); a run for some
    users alone adds their cutoff."""
    cache.set(CACHE_KEY, _as_cache_value(latest_run(), _latest_user_runs()), CACHE_SECONDS)
