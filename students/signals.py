"""The app's signal receivers, connected once by StudentsConfig.ready (students.apps) importing this
module. Each stamps or schedules; what it stamps is read elsewhere (named on each)."""
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core.signals import request_finished
from django.dispatch import receiver
from django.utils import timezone

from students import cleanup, schedule_store, session_index, zones
from students.selection import LOGIN_TIME_KEY


@receiver(user_logged_in, dispatch_uid="students.signals.remember_login_time")
def remember_login_time(sender, request, user, **kwargs):
    """Stamp the session's login time, which the middleware compares to each cutoff (students.cutoff)."""
    if request is not None and hasattr(request, "session"):
        # Django's clock, the one expire_date is written with: a row's expire_date - cookie age is
        # then never before its login time (the scheduled purge relies on it).
        request.session[LOGIN_TIME_KEY] = timezone.now().timestamp()


@receiver(user_logged_in, dispatch_uid="students.signals.stamp_at_login")
def stamp_at_login(sender, request, user, **kwargs):
    """Stamp the session with the user's zone, which logs it out in per-user mode (students.zones;
    one query per login)."""
    if request is not None and hasattr(request, "session"):
        zones.stamp(request.session, user, timezone.now(), schedule_store.recorded_schedule())


# After the two stamps above (receivers run in the order they connect): the ownership index's row
# copies the login time and the zone from the session. session_index's functions are the receivers.
user_logged_in.connect(session_index.record_login, dispatch_uid="students.session_index.record_login")
user_logged_out.connect(session_index.forget_at_logout, dispatch_uid="students.session_index.forget")


@receiver(request_finished, dispatch_uid="students.signals.cleanup_after_response")
def cleanup_after_response(sender=None, **kwargs):
    """With no scheduler, the site's own storage cleanup, after the response (students.cleanup)."""
    cleanup.run_if_due(sender, **kwargs)
