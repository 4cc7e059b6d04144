from django.apps import AppConfig


class StudentsConfig(AppConfig):
    name = "students"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.core.signals import request_finished

        from students import checks  # noqa: F401  (registers the `manage.py check` checks)
        from students.cleanup import run_if_due
        from students import session_index
        from students.cutoff import remember_login_time
        from students.zones import stamp_at_login

        user_logged_in.connect(remember_login_time, dispatch_uid="students.remember_login_time")
        user_logged_in.connect(stamp_at_login, dispatch_uid="students.zones.stamp_at_login")
        # After the two stamps above: the row copies the login time and the zone from the session.
        user_logged_in.connect(session_index.record_login, dispatch_uid="students.session_index.record_login")
        user_logged_out.connect(session_index.forget_at_logout, dispatch_uid="students.session_index.forget")
        request_finished.connect(run_if_due, dispatch_uid="students.cleanup")
