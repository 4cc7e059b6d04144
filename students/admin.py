from django.contrib import admin

from students.models import LogoutRun


@admin.register(LogoutRun)
class LogoutRunAdmin(admin.ModelAdmin):
    """Read-only history of logout runs: the command writes it, people only look."""

    list_display = ("started_at", "finished_at", "host", "engine", "deleted_active",
                    "deleted_expired", "kept_sessions", "outcome")
    list_filter = ("outcome", "engine", "host")
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
