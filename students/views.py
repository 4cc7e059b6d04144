import logging

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from students import health

logger = logging.getLogger(__name__)


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
