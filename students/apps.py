from django.apps import AppConfig


class StudentsConfig(AppConfig):
    name = "students"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Importing them registers them: the `manage.py check` checks, and the signal receivers.
        from students import checks, signals  # noqa: F401
