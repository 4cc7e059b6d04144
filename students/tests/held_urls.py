"""The site's URLs plus one page whose view waits until the test lets it render, so a test can hold a
request between the middleware's read and the page's rendering while other requests run
(students/tests/test_request_reads.py)."""
import threading

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path

from lcstats.urls import urlpatterns as site_urlpatterns

entered = threading.Event()  # the held page's view has started (the middleware has run)
release = threading.Event()  # the test lets it render


@login_required
def held_statistics(request):
    entered.set()
    if not release.wait(60):
        raise TimeoutError("the test never released the held page")
    return render(request, "students/statistics.html")


urlpatterns = [path("held/", held_statistics), *site_urlpatterns]
