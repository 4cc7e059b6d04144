"""`manage.py check` checks for the nightly logout (registered in StudentsConfig.ready).

students.E001  the cutoff middleware is not in MIDDLEWARE
students.E002  the cutoff middleware comes before AuthenticationMiddleware (or that is missing)
students.W001  the session storage cannot be cleaned by the purge (e.g. the cache engine on a cache
               that cannot list its keys)
students.W002  the nightly logout is overdue (database tag: runs with `check --database default`,
               never with plain `check`, the nightly command or before `migrate` has made the tables)
students.W003  the file engine's folder, SESSION_FILE_PATH, is empty: Django then uses the system temp
               folder (/tmp), which every local user writes to
students.W004  the file engine's folder is writable by every local user
"""
import os
import stat
import tempfile

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections, router
from django.utils.module_loading import import_string

TAG = "nightly_logout"  # `manage.py check --tag nightly_logout [--database default]` runs only these
CUTOFF_MIDDLEWARE = "students.middleware.LogoutCutoffMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _position(middleware, class_path):
    """Index of the first MIDDLEWARE entry that is `class_path` or a subclass of it, else None."""
    wanted = import_string(class_path)
    for index, path in enumerate(middleware):
        try:
            candidate = import_string(path)
        except ImportError:
            continue  # Django reports an unimportable middleware itself when it loads it
        if isinstance(candidate, type) and issubclass(candidate, wanted):
            return index
    return None


@register(TAG)
def check_cutoff_middleware(app_configs=None, **kwargs):
    cutoff = _position(settings.MIDDLEWARE, CUTOFF_MIDDLEWARE)
    if cutoff is None:
        return [Error(
            f"{CUTOFF_MIDDLEWARE} is not in MIDDLEWARE, so no session is ever ended by a logout cutoff: "
            "signed_cookies sessions, sessions the purge could not reach and, when no job runs, every "
            "session stay logged in.",
            hint=f"Add '{CUTOFF_MIDDLEWARE}' to MIDDLEWARE right after '{AUTH_MIDDLEWARE}'.",
            id="students.E001",
        )]
    auth = _position(settings.MIDDLEWARE, AUTH_MIDDLEWARE)
    if auth is None or cutoff < auth:
        where = "is missing" if auth is None else "comes after it"
        return [Error(
            f"{CUTOFF_MIDDLEWARE} needs request.user, which AuthenticationMiddleware sets, but "
            f"AuthenticationMiddleware {where}: the cutoff never logs anyone out.",
            hint=f"Put '{CUTOFF_MIDDLEWARE}' after '{AUTH_MIDDLEWARE}' in MIDDLEWARE.",
            id="students.E002",
        )]
    return []


@register(TAG)
def check_session_storage(app_configs=None, **kwargs):
    # The purge's own test of what it can clean, so the check and the nightly run never disagree.
    from students.engines import UnsupportedEngine, detect_engine
    from students.purge import check_purgeable

    try:
        check_purgeable(detect_engine())
    except UnsupportedEngine as exc:
        return [Warning(
            f"The nightly logout cannot clean the session storage: {exc}.",
            hint="The logout cutoff still ends these sessions at their next request, but the nightly job "
                 "cannot delete them from storage (they stay until the cache drops them) and "
                 "`manage.py logout_all_users` fails with this message.",
            id="students.W001",
        )]
    return []


@register(TAG)
def check_session_folder(app_configs=None, **kwargs):
    """The file engine's folder must be the site's own: in a folder other users write to, their
    files sit among the sessions (the purge skips, counts and reports them: students.purge.files),
    anyone can plant or fill session files, and a web server with a private /tmp (systemd's
    PrivateTmp) keeps its sessions where the nightly job never looks."""
    from students.engines import UnsupportedEngine, detect_engine

    try:
        if detect_engine().kind != "file":
            return []
    except UnsupportedEngine:
        return []  # check_session_storage reports it
    hint = ("Set SESSION_FILE_PATH to a folder of the site's own that only the site user may write to "
            "(e.g. mode 0700, owned by the site user), the same for the web server and the nightly job.")
    if not settings.SESSION_FILE_PATH:
        return [Warning(
            f"SESSION_FILE_PATH is empty, so the file session engine keeps sessions in the system temp "
            f"folder ({tempfile.gettempdir()}), which every local user can write to.",
            hint=hint, id="students.W003",
        )]
    try:
        mode = os.stat(settings.SESSION_FILE_PATH).st_mode
    except OSError:
        return []  # Django's file engine reports a missing folder itself, at the first session
    if mode & stat.S_IWOTH:
        return [Warning(
            f"SESSION_FILE_PATH {settings.SESSION_FILE_PATH!r} is writable by every local user "
            f"(mode {stat.S_IMODE(mode):04o}).",
            hint=hint, id="students.W004",
        )]
    return []


def _tables_exist(connection, models):
    return {model._meta.db_table for model in models} <= set(connection.introspection.table_names())


@register(TAG, Tags.database)
def check_logout_overdue(app_configs=None, databases=None, **kwargs):
    from django.apps import apps

    from students.health import logout_health
    from students.models import LogoutRun

    alias = router.db_for_read(LogoutRun)
    if not databases or alias not in databases:
        return []
    if not _tables_exist(connections[alias], apps.get_app_config("students").get_models()):
        return []  # not migrated yet: `migrate` runs this check before it makes the tables
    health = logout_health()
    if not health.overdue:
        return []
    return [Warning(health.summary, hint=health.hint, id="students.W002")]
