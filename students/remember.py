""""Keep me signed in" (issue 15, part 2): a checkbox on the login page, offered only while the
recorded schedule has keep_remembered (`logout_schedule --set ... --keep-remembered`), never by a
setting of its own. This module holds the rule; the form (students.forms.LoginForm) and the login view
(students.views.LoginView) ask offered() and call remember().

Ticked, the login is remembered: the session gets the marker selection.REMEMBERED_KEY and a fixed
expiry, login + SESSION_COOKIE_AGE (set_expiry with a datetime: counted from the login, not sliding
with each save), and the server writes a RememberedLogin row naming the session and its user.
- The clock cutoff and run cutoffs whose keep rule has keep_remembered spare such a session by its
  marker (students.cutoff.Cutoff.ends; session data only the server writes, so no query).
- The purge (`logout_all_users --keep-remembered`) keeps only sessions that have a row and whose
  stored data carries the marker and the row's user (students.purge.remembered); a session that
  merely claims it is deleted.
- No warning banner for it while the schedule keeps it (students.warning).
- Django gives a session a new key on a password change (update_session_auth_hash) and on login
  (cycle_key); the row follows the new key (follow_new_key, called by the cutoff middleware after
  any request that changed the key), so such a login stays remembered.
"""
from datetime import timedelta

from django.conf import settings
from django.contrib.sessions.backends import signed_cookies
from django.db import transaction
from django.utils import timezone

from students import schedule_store
from students.models import RememberedLogin
from students.selection import REMEMBERED_KEY


def offered():
    """Does the recorded schedule offer "Keep me signed in"? One cache read (a query on a miss)."""
    schedule = schedule_store.recorded_schedule()
    return schedule is not None and schedule.keep_remembered


def remember(request):
    """Mark this just-logged-in session as remembered, fix its expiry, and record the login."""
    session = request.session
    logged_in_at = timezone.now()
    expires_at = logged_in_at + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    session.set_expiry(expires_at)
    session[REMEMBERED_KEY] = True
    if isinstance(session, signed_cookies.SessionStore):
        return  # nothing stored on the server to keep or purge: the marker and the expiry are all
    session.save()  # the key the row names must exist now
    RememberedLogin.objects.update_or_create(
        session_key=session.session_key,
        defaults={"user_id": str(request.user.pk), "logged_in_at": logged_in_at, "expires_at": expires_at})


def follow_new_key(request, old_key):
    """After a request in which Django gave the session a new key (cycle_key): move the remembered
    row from `old_key` to the new one, when this still is that user's remembered session. Costs a
    query only on such requests (logins, password changes) of remembered sessions."""
    session = request.session
    new_key = session.session_key
    user = getattr(request, "user", None)
    if (not new_key or new_key == old_key or isinstance(session, signed_cookies.SessionStore)
            or user is None or not user.is_authenticated or session.get(REMEMBERED_KEY) is not True):
        return
    with transaction.atomic():
        if RememberedLogin.objects.filter(session_key=new_key).exists():
            return  # written for the new key already (a login with the box ticked: remember())
        RememberedLogin.objects.filter(session_key=old_key, user_id=str(user.pk)).update(session_key=new_key)
