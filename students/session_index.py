"""The ownership index (issue 22): whose session is it, answered by a row the server writes.

One home for writing and reading students.models.SessionOwner rows (read its docstring: a row says
where to look and never keeps a session alive).

- Login (record_login, a user_logged_in receiver that runs after the login-time and zone stamps):
  one row for the session's key when the engine stores sessions on the server (db, cached_db,
  cache, file); none for signed cookies, which the cutoff ends. The IP is kept only when
  settings.LOGOUT_SESSIONS_STORE_IP is true.
- New key (follow_new_key, called by the cutoff middleware after a request that changed the key:
  login's cycle_key, a password change's update_session_auth_hash): the row moves to the new key.
- Logout (forget_at_logout, user_logged_out): the row goes.
An ordinary page view writes and reads nothing here.

Logging users out now (log_out_users: `logout_all_users --user`, the user admin's action; and
end_other_sessions: the "Your sessions" page) deletes the indexed sessions by key through the
engine's SessionStore (a few keys: cheap on every engine) and records a LogoutRun whose cutoff
applies to those users alone (only_user_ids), so their unindexed and signed-cookie sessions end at
their next request (students.cutoff.UserCutoffs).
"""
import logging
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends import signed_cookies
from django.db import transaction
from django.utils import timezone

from students import cutoff
from students.cutoff import SPARED_BY_KEY
from students.models import LogoutRun, SessionOwner
from students.selection import LOGIN_TIME_KEY, ZONE_KEY, users_named

logger = logging.getLogger("students.logout")

USER_AGENT_CHARS = 300  # SessionOwner.user_agent's length
UPSERT_FIELDS = ("user_id", "zone", "logged_in_at", "user_agent", "ip_address")  # all but the key


def on_server(session):
    """Does this session's engine store it on the server (so it can have a row)?"""
    return not isinstance(session, signed_cookies.SessionStore)


# --- keeping the index in step with logins -------------------------------------------------------

def record_login(sender, request, user, **kwargs):
    """user_logged_in receiver: write this session's row. One statement (an upsert, autocommitted): a
    login on SQLite pays a commit, so update_or_create's read, savepoint and transaction cost it
    more (benchmarks/bench_login_index.py)."""
    session = getattr(request, "session", None)
    if session is None or not on_server(session):
        return
    if session.session_key is None:
        session.save()  # login() cycles the key, which saves; a store that did not gets one here
    stamped = session.get(LOGIN_TIME_KEY)
    logged_in_at = datetime.fromtimestamp(stamped, UTC) if isinstance(stamped, (int, float)) else timezone.now()
    ip = (request.META.get("REMOTE_ADDR") or None) if settings.LOGOUT_SESSIONS_STORE_IP else None
    row = SessionOwner(session_key=session.session_key, user_id=str(user.pk), zone=session.get(ZONE_KEY) or "",
                       logged_in_at=logged_in_at, user_agent=request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_CHARS],
                       ip_address=ip)
    SessionOwner.objects.bulk_create([row], update_conflicts=True, unique_fields=["session_key"],
                                     update_fields=[*UPSERT_FIELDS])


def follow_new_key(request, old_key):
    """After a request in which Django gave the session a new key: the old key's session is gone
    (cycle_key and flush delete it), so its row moves to the new key when it is this user's and the
    new key has none yet (a password change), else it goes (a login wrote the new key's row). Costs
    a query or two, only on such requests of signed-in users."""
    session = request.session
    new_key = session.session_key
    user = getattr(request, "user", None)
    if (not new_key or new_key == old_key or not on_server(session)
            or user is None or not user.is_authenticated):
        return
    with transaction.atomic():
        if SessionOwner.objects.filter(session_key=new_key).exists() or not (
                SessionOwner.objects.filter(session_key=old_key, user_id=str(user.pk)).update(session_key=new_key)):
            SessionOwner.objects.filter(session_key=old_key).delete()


def forget_at_logout(sender, request, user, **kwargs):
    """user_logged_out receiver (sent before Django flushes the session): delete its row."""
    session = getattr(request, "session", None)
    if session is not None and on_server(session) and session.session_key:
        SessionOwner.objects.filter(session_key=session.session_key).delete()


# --- reading it -----------------------------------------------------------------------------------

def sessions_of(user):
    """The user's indexed sessions, newest login first."""
    return list(SessionOwner.objects.filter(user_id=str(user.pk)).order_by("-logged_in_at"))


# --- logging users out now ------------------------------------------------------------------------

@dataclass(frozen=True)
class Ended:
    """What log_out_users / end_other_sessions did."""

    run_id: int
    usernames: tuple
    sessions: int        # indexed sessions deleted from storage now
    purge_ms: float      # the time spent finding and deleting them (and their rows)


def log_out_users(usernames):
    """End every session of these users now (`logout_all_users --user`). Raises selection.UnknownUsers
    before changing anything."""
    return end_sessions(users_named(usernames, option="--user", then="; nothing was done"))


def end_sessions(users, *, spare=None):
    """Record a run whose cutoff applies to `users` alone, then delete their indexed sessions by key
    (and the rows). `spare`: a request whose session survives (the "Your sessions" page): it is
    neither deleted nor ended by the cutoff."""
    user_ids = sorted({str(u.pk) for u in users})
    spared_key = spare.session.session_key if spare is not None else None
    run = LogoutRun.objects.create(
        started_at=timezone.now(), host=socket.gethostname(), engine=settings.SESSION_ENGINE,
        only_user_ids=user_ids, only_usernames=sorted(u.get_username() for u in users))
    if spare is not None:
        spare.session[SPARED_BY_KEY] = run.pk  # before the cutoff is published: no request of it races it
        spare.session.save()
    clock = time.perf_counter()
    try:
        deleted = _delete_indexed(user_ids, spared_key)
    except Exception as exc:
        run.outcome, run.error, run.finished_at = LogoutRun.Outcome.FAILED, str(exc), timezone.now()
        run.save()
        raise
    purge_ms = (time.perf_counter() - clock) * 1000
    run.deleted_active, run.finished_at, run.outcome = deleted, timezone.now(), LogoutRun.Outcome.SUCCESS
    run.save()
    cutoff.publish(run)
    logger.info("Logged out user(s) %s now: deleted %d indexed session(s) in %.1f ms (run %d)",
                ", ".join(run.only_usernames), deleted, purge_ms, run.pk)
    return Ended(run_id=run.pk, usernames=tuple(run.only_usernames), sessions=deleted, purge_ms=purge_ms)


def _delete_indexed(user_ids, spared_key):
    """Delete the sessions the index names for these users (except `spared_key`), each by key through
    the engine's own SessionStore (so every engine, and cached_db's cache too), then their rows."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    if not on_server(store):
        return 0  # nothing on the server: the cutoff ends them
    keys = list(SessionOwner.objects.filter(user_id__in=user_ids).exclude(session_key=spared_key or "")
                .values_list("session_key", flat=True))
    deleted = 0
    with transaction.atomic():  # one commit, not one per key (on SQLite each commit is a disk sync)
        for key in keys:
            if store.exists(key):  # a stale row (its session expired or gone) ends nothing
                store.delete(key)
                deleted += 1
        SessionOwner.objects.filter(session_key__in=keys).delete()
    return deleted


def end_other_sessions(request):
    """"Sign out my other sessions": end every session of this user except the request's own."""
    if on_server(request.session) and request.session.session_key is None:
        request.session.save()
    return end_sessions([request.user], spare=request)


# --- the user agent, in plain words -------------------------------------------------------------

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari", every Android says "Linux".
_BROWSERS = (("Edge", r"Edg(?:e|A|iOS)?/"), ("Opera", r"OPR/|Opera"), ("Samsung Internet", r"SamsungBrowser/"),
             ("Firefox", r"Firefox/|FxiOS/"), ("Chrome", r"Chrome/|CriOS/|HeadlessChrome/"),
             ("Safari", r"Safari/"))
_SYSTEMS = (("iPhone", r"iPhone"), ("iPad", r"iPad"), ("Android", r"Android"), ("ChromeOS", r"CrOS"),
            ("Windows", r"Windows"), ("macOS", r"Mac OS X|Macintosh"), ("Linux", r"Linux|X11"))


def describe_user_agent(user_agent):
    """'Firefox on Windows', 'Safari on iPhone', ... from a User-Agent header; 'Unknown browser' and
    'unknown system' for what it does not recognise."""
    browser = next((name for name, pattern in _BROWSERS if re.search(pattern, user_agent or "")), "Unknown browser")
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, user_agent or "")), "unknown system")
    return f"{browser} on {system}"
