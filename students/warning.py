"""The warning before the logout: from `warn_minutes` before a user's next logout, every signed-in
page shows "You will be signed out at 02:00 (in 12 minutes). Save your work." (issue 15, part 1).

Switched on with the schedule (`logout_schedule --set ... --warn-minutes N`, LogoutSchedule.warn_minutes),
never by a setting of its own. The next logout is the schedule's next instant (Schedule.next_instant,
remembered per process by students.clock like the clock cutoffs). Users the schedule keeps see
nothing, nor do remembered ("keep me signed in") sessions when the schedule keeps them.

Cost: the context processor reads the schedule the cutoff middleware already read for this request
and left on it (clock.schedule_for): no query and no second cache round trip. An anonymous request reads
nothing at all, and neither does the status endpoint for an anonymous caller (it only checks a
signature).

The page (students/static/students/logout_warning.js) counts down the seconds the server sent and at
zero asks the status endpoint (students.views.nightly_logout_status, answering with warning_for and
login_url from here). By then the cutoff middleware has ended the session; the endpoint then
answers with the login page's address carrying a short-lived signed reason, so the login page says
"You were signed out by the nightly logout at 02:00." only when this flow led there: the server gives
it only to a page whose logout time has passed and whose session is gone, a logout by hand lands on
the plain login page, and the script stops every tab's countdown when one tab logs out by hand.
"""
import math
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.shortcuts import resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from students import clock
from students.selection import REMEMBERED_KEY

# The page's token: "this user's next logout is at `at`" (issued with the page, good until then).
PAGE_SALT = "students.warning.page"
# The login page's reason: issued by the status endpoint once the session has ended.
REASON_SALT = "students.warning.reason"
REASON_MAX_AGE = 10 * 60  # seconds a "signed out" link keeps its reason


@dataclass(frozen=True)
class LogoutWarning:
    at: float             # the logout instant, epoch seconds
    time: str             # its local time in the schedule's zone (per-user mode: the user's), "HH:MM"
    seconds_left: float   # from this request to the instant
    window: int           # seconds before the instant that the banner shows

    @property
    def shown(self):
        return self.seconds_left <= self.window

    @property
    def minutes_left(self):
        return max(1, math.ceil(self.seconds_left / 60))

    @property
    def token(self):
        return signing.dumps({"at": self.at, "time": self.time}, salt=PAGE_SALT, compress=True)

    def as_json(self):
        return {"at": self.at, "time": self.time, "seconds_left": self.seconds_left, "window": self.window,
                "token": self.token}


def warning_for(request, now):
    """The warning for the request's signed-in user (in its session) at `now` (shown or not yet), or
    None: no warning is set, no schedule, or the schedule keeps this user or this remembered session."""
    user, session = request.user, getattr(request, "session", None)
    if not user.is_authenticated:
        return None
    schedule = clock.schedule_for(request)
    if schedule is None or not schedule.warn_minutes:
        return None
    if str(user.pk) in schedule.kept_user_ids or (schedule.keep_staff and user.is_staff):
        return None
    if schedule.keep_remembered and session is not None and session.get(REMEMBERED_KEY) is True:
        return None
    at = clock.next_instant_at(schedule, now, session)
    if math.isinf(at):
        return None
    shown_in = clock.display_zone(schedule, session) or schedule.zone
    return LogoutWarning(at=at, time=f"{datetime.fromtimestamp(at, shown_in):%H:%M}",
                         seconds_left=at - now.timestamp(), window=schedule.warn_minutes * 60)


def context(request):
    """Context processor: `logout_warning` for students/templates/students/logout_warning.html, and
    for the login page `logout_reason` (signed_out_reason)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:  # anonymous: a signature check at most, no read
        return {"logout_reason": signed_out_reason(request)} if "signed_out" in request.GET else {}
    return {"logout_warning": warning_for(request, timezone.now())}


def login_url(request, now):
    """The login page's address for a caller of the status endpoint whose session has ended: with its
    `next` when that stays on this site, and a signed reason when the page's token says its logout
    time has passed."""
    query = {}
    target = request.GET.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        query["next"] = target
    due = _page_token(request.GET.get("token", ""))
    if due is not None and due["at"] <= now.timestamp():
        # Valid until Django's clock says so (the clock the rest of the logout uses).
        reason = {"time": due["time"], "until": now.timestamp() + REASON_MAX_AGE}
        query["signed_out"] = signing.dumps(reason, salt=REASON_SALT, compress=True)
    url = resolve_url(settings.LOGIN_URL)
    return f"{url}?{urlencode(query)}" if query else url


def _page_token(token):
    try:
        return signing.loads(token, salt=PAGE_SALT)
    except signing.BadSignature:
        return None


def signed_out_reason(request):
    """For the login page: "You were signed out by the nightly logout at HH:MM." when it was reached
    from the status endpoint after a nightly logout (a signed, short-lived reason), else None."""
    token = request.GET.get("signed_out")
    if not token:
        return None
    try:
        reason = signing.loads(token, salt=REASON_SALT)
    except signing.BadSignature:
        return None
    if reason["until"] < timezone.now().timestamp():
        return None
    return f"You were signed out by the nightly logout at {reason['time']}."
