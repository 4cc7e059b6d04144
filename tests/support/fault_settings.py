"""Settings for fault tests only: the site's own settings, plus a pause after every purge batch
(FAULT_PAUSE_SECONDS, default none) so a test can act while a real run is part-way through a
purge: kill it, stop its database, send requests (to pages made slow by FAULT_SLOW_PAGE_SECONDS). The pause follows the heartbeat the purge
calls after every batch (the lock's renewal); nothing else changes.

    DJANGO_SETTINGS_MODULE=tests.support.fault_settings FAULT_PAUSE_SECONDS=0.2 manage.py logout_all_users
"""
import os
import time

from django.apps import AppConfig

from lcstats.settings import *  # noqa: F401,F403 (the site's settings, unchanged)
from lcstats.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support.fault_settings.PauseAfterEveryBatch"]
# A site that saves the session on every request: a request during the purge re-saves its session.
SESSION_SAVE_EVERY_REQUEST = True
# A slow page (FAULT_SLOW_PAGE_SECONDS): the session is loaded (the cutoff middleware has looked at
# it) before the pause and saved after it, so a purge can delete it in between.
MIDDLEWARE = [*MIDDLEWARE, "tests.support.fault_settings.slow_page"]


def slow_page(get_response):
    pause = float(os.environ.get("FAULT_SLOW_PAGE_SECONDS") or 0)

    def middleware(request):
        time.sleep(pause)
        return get_response(request)

    return middleware


class PauseAfterEveryBatch(AppConfig):
    name = "tests"
    label = "fault_pause"

    def ready(self):
        pause = float(os.environ.get("FAULT_PAUSE_SECONDS") or 0)
        if not pause:
            return
        from students import logout

        purge = logout.purge

        def purge_pausing_after_every_batch(*args, heartbeat, **kwargs):
            def beat():
                heartbeat()
                time.sleep(pause)
            return purge(*args, heartbeat=beat, **kwargs)

        logout.purge = purge_pausing_after_every_batch
