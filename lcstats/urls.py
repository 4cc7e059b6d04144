from django.contrib import admin
from django.urls import include, path

from students import views

urlpatterns = [
    path("", views.statistics, name="statistics"),
    # Django's LoginView with the "Keep me signed in" checkbox (students.remember), before Django's own.
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    # logout/ (POST only), password change.
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    # For uptime monitors, no login: 200 while the nightly logout is healthy, 503 once overdue.
    path("health/nightly-logout/", views.nightly_logout_health, name="nightly_logout_health"),
    # The warning banner's countdown asks here at zero (students.warning).
    path("nightly-logout/status/", views.nightly_logout_status, name="nightly_logout_status"),
    # The user's own time zone, for the per-user logout mode (students.zones).
    path("accounts/time-zone/", views.time_zone_page, name="time_zone"),
    # The user's own sessions, and "Sign out my other sessions" (students.session_index).
    path("account/sessions/", views.your_sessions, name="your_sessions"),
]
