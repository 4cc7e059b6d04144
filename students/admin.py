from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from students import session_index
from students.models import LogoutRun, UserTimeZone


def _duration_text(seconds):
    """Short enough for a list column, on one line: 3.4 s, 2 min 05 s, 1 h 07 min."""
    if seconds < 60:
        text = f"{seconds:.1f} s"
    else:
        minutes, seconds = divmod(round(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        text = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"
    return text.replace(" ", "\u00a0")  # no-break spaces: the cell never wraps


@admin.register(LogoutRun)
class LogoutRunAdmin(admin.ModelAdmin):
    """Read-only history of logout runs: the command writes it, people only look.

    The list puts what a person checks first (outcome, how long, how many) before the host and the
    engine; the engine shows as its kind (db, cache, ...) there, the full path in the detail view.
    """

    list_display = ("started_at", "outcome", "duration", "deleted", "expired", "kept", "engine_kind", "host")
    list_filter = ("outcome", "engine", "host")
    date_hierarchy = "started_at"

    @admin.display(description="duration")
    def duration(self, run):
        if run.finished_at is None:
            return "-"
        return _duration_text((run.finished_at - run.started_at).total_seconds())

    # Short headers for the counts, so all of them fit beside the filters.
    @admin.display(description="deleted", ordering="deleted_active")
    def deleted(self, run):
        return run.deleted_active

    @admin.display(description="expired", ordering="deleted_expired")
    def expired(self, run):
        return run.deleted_expired

    @admin.display(description="kept", ordering="kept_sessions")
    def kept(self, run):
        return run.kept_sessions

    @admin.display(description="engine", ordering="engine")
    def engine_kind(self, run):
        # django.contrib.sessions.backends.cached_db -> cached_db (the kind the purge reports).
        return run.engine.rpartition(".")[2]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UserTimeZone)
class UserTimeZoneAdmin(admin.ModelAdmin):
    """Who is logged out by which zone (per-user mode, students.zones). Read-only: a change goes
    through the user's time-zone page, which makes it wait for their next logout."""

    list_display = ("user", "zone", "next_zone", "next_zone_from")
    list_filter = ("zone",)
    search_fields = ("user__username",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.action(description="Log out selected users now", permissions=["change"])
def log_out_now(modeladmin, request, queryset):
    """The same path as `logout_all_users --user` (students.session_index), recorded as a LogoutRun."""
    users = list(queryset)
    ended = session_index.end_sessions(users)
    modeladmin.message_user(
        request, f"Logged out {len(users)} user(s) now: {ended.sessions} session(s) ended; any other session of "
                 f"theirs ends at its next request (run {ended.run_id}).", messages.SUCCESS)


# The user admin Django (or the project) registered, with the action added.
_User = get_user_model()
_UserAdmin = type(admin.site.get_model_admin(_User))
admin.site.unregister(_User)


@admin.register(_User)
class UserAdmin(_UserAdmin):
    actions = [*(_UserAdmin.actions or []), log_out_now]


# The index warns at the top while the nightly logout is overdue (students.health).
admin.site.index_template = "admin/nightly_logout_index.html"
