"""--keep-staff never keeps a forged session that claims a staff id, on every engine that stores
sessions (db on SQLite and, in the PostgreSQL re-run, on PostgreSQL; cached_db, file, and cache on
a real Redis), in real runs and dry runs. cached_db goes by the block-range path on PostgreSQL and the
page-by-page path elsewhere.

Forged: the data names the teacher but its signature is not ours (db, cached_db, file); for the
cache engine, whose values are not signed, an entry that is not a session dict but text claiming
the teacher. Storage is looked at first, then the pages each cookie gets."""
import os
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import caches

from students.tests.helpers import is_signed_in, login, run_command as run, stored, use_engine

pytestmark = pytest.mark.django_db
FORGED_KEY = "f0rged" + "a" * 26


def forge_staff_session(engine, teacher):
    """Store a session claiming the teacher that Django never signed; returns nothing (key FORGED_KEY)."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    claim = {SESSION_KEY: str(teacher.pk), "_auth_user_backend": "django.contrib.auth.backends.ModelBackend"}
    if engine == "cache":
        caches[settings.SESSION_CACHE_ALIAS].set(store_class.cache_key_prefix + FORGED_KEY, repr(claim), 3600)
        return
    payload, timestamp, _signature = store_class().encode(claim).rsplit(":", 2)
    forged = f"{payload}:{timestamp}:{'A' * 43}"
    if engine == "file":
        with open(os.path.join(settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME + FORGED_KEY), "w") as file:
            file.write(forged)
        return
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    Session.objects.create(session_key=FORGED_KEY, session_data=forged, expire_date=timezone.now() + timedelta(hours=1))


def forged_is_stored():
    return import_module(settings.SESSION_ENGINE).SessionStore().exists(FORGED_KEY)


@pytest.fixture(params=["db", "cached_db", "file", "cache"])
def storing_engine(request, settings, tmp_path):
    redis_url = request.getfixturevalue("redis_server") if request.param == "cache" else None
    use_engine(settings, tmp_path, request.param, redis_url=redis_url)
    return request.param


def test_keep_staff_deletes_a_forged_session_claiming_a_staff_id(storing_engine, users):
    teacher, alice = login("teacher"), login("alice")
    forge_staff_session(storing_engine, users["teacher"])
    assert forged_is_stored()

    output = run("--keep-staff")

    assert "Kept 1 session(s) (users: all staff)" in output
    assert not forged_is_stored(), "the forged staff session was kept"
    assert stored(teacher) and not stored(alice)
    assert is_signed_in(teacher, "teacher") and not is_signed_in(alice, "alice")


def test_a_keep_staff_dry_run_does_not_count_a_forged_session_as_kept(storing_engine, users):
    login("teacher"), login("alice")
    forge_staff_session(storing_engine, users["teacher"])

    output = run("--dry-run", "--keep-staff")

    assert "Would keep 1 session(s) (users: all staff)" in output
    assert "Would log out all users by deleting 2 session(s)" in output
    assert forged_is_stored(), "a dry run changes nothing"
