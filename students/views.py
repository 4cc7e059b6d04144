"""The app's views; the rules they apply live in the modules they call (students.remember,
students.warning, students.health, students.session_index, students.zones)."""
import logging
from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from students import health, remember, schedule_store, session_index, warning, zones
from students.forms import LoginForm, TimeZoneForm
from students.models import UserTimeZone
from students.schedule import zone_info
from students.selection import LOGIN_TIME_KEY

logger = logging.getLogger(__name__)


class LoginView(auth_views.LoginView):
    """Django's login view with "Keep me signed in" (students.remember) and the browser's time zone
    for a user who has none yet (students.zones)."""

    form_class = LoginForm

    def form_valid(self, form):
        zones.fill_from_browser(form.get_user(), form.cleaned_data.get("browser_zone", ""), timezone.now(),
                                schedule_store.recorded_schedule())  # before the login stamps the zone in effect
        response = super().form_valid(form)  # logs in: a fresh session key, the login time stamped
        if form.cleaned_data.get("remember"):
            remember.remember(self.request)
        return response


@login_required
def statistics(request):
    """The page a signed-in student sees; anonymous visitors are sent to the login page."""
    return render(request, "students/statistics.html")


@require_safe
@never_cache  # the answer is cached here for a few seconds; proxies must not keep it longer
def nightly_logout_health(request):
    """For uptime monitors, no login: 200 while the nightly logout is healthy, 503 once overdue.

    Reads neither request.user nor the session (a monitor sends no cookie, so none is made), and a
    cached answer costs no query; see students.health for what "healthy" means.
    """
    try:
        body = health.cached_health_json()
    except DatabaseError:
        logger.exception("Nightly logout health: the database could not be read")
        body = {**dict.fromkeys(health.KEYS), "status": health.UNKNOWN}
    return JsonResponse(body, status=200 if body["status"] in health.HEALTHY else 503)


@require_safe
@never_cache
def nightly_logout_status(request):
    """GET nightly-logout/status/?token=...&next=...: what the warning banner's countdown asks at zero
    (and a tab that slept, when it wakes); see students.warning. The cutoff middleware has already
    ended the session if its time has passed. Signed in: {"signed_in": true, "warning": {...} | null};
    signed out: {"signed_in": false, "login_url": ...}, with the reason when the page's token says its
    logout time has passed."""
    now = timezone.now()
    if request.user.is_authenticated:
        found = warning.warning_for(request, now)
        return JsonResponse({"signed_in": True, "warning": found.as_json() if found else None})
    return JsonResponse({"signed_in": False, "login_url": warning.login_url(request, now)})


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def your_sessions(request):
    """GET: the user's sessions the index knows (browser, login time in their zone, this one marked).
    POST (CSRF-checked): "Sign out my other sessions", then GET (students.session_index)."""
    if request.method == "POST":
        ended = session_index.end_other_sessions(request)
        messages.success(request, f"Signed out your other sessions ({ended.sessions} ended now; any other "
                                  "ends at its next request). This session stays signed in.")
        return redirect("your_sessions")
    now = timezone.now()
    schedule = schedule_store.recorded_schedule()
    zone = zone_info(zones.zone_in_effect(request.user, now)) or (schedule.zone if schedule else UTC)
    current_key = request.session.session_key
    rows = [{"browser": session_index.describe_user_agent(row.user_agent),
             "logged_in_at": row.logged_in_at.astimezone(zone), "current": row.session_key == current_key,
             "ip_address": row.ip_address} for row in session_index.sessions_of(request.user)]
    if not any(row["current"] for row in rows):  # signed cookies, or a login from before the index
        stamped = request.session.get(LOGIN_TIME_KEY)
        rows.insert(0, {"browser": session_index.describe_user_agent(request.META.get("HTTP_USER_AGENT", "")),
                        "logged_in_at": datetime.fromtimestamp(stamped, zone) if isinstance(stamped, (int, float))
                        else None, "current": True, "ip_address": None})
    rows.sort(key=lambda row: not row["current"])  # this session first
    return render(request, "students/your_sessions.html", {"sessions": rows, "zone": str(zone)})


@login_required
def time_zone_page(request):
    """The user's own time zone, for the per-user logout mode (students.zones). GET: the user's zone
    and any pending change; POST: change it (as zones.change() says), then GET."""
    now = timezone.now()
    schedule = schedule_store.recorded_schedule()
    site_zone = schedule.timezone if schedule else ""
    row = UserTimeZone.objects.filter(user=request.user).first()
    form = TimeZoneForm(request.POST or None, initial={"zone": row.zone_at(now) if row else ""})
    if request.method == "POST" and form.is_valid():
        zones.change(request.user, form.cleaned_data["zone"], now, schedule)
        return redirect("time_zone")
    current = (row.zone_at(now) if row else "") or site_zone
    pending = row is not None and row.next_zone_from is not None and row.next_zone_from > now
    return render(request, "students/time_zone.html", {
        "form": form, "current": current,
        "pending_zone": (row.next_zone or site_zone) if pending else None,
        # In the zone in effect: the user's logout time there.
        "pending_from": row.next_zone_from.astimezone(zone_info(current) or UTC) if pending else None,
    })
