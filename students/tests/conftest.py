"""The students tests' fixtures: users, a session engine per test, Django's clock pinned, a fresh
cache and fast password hashing. Helpers the tests call are in students/tests/helpers.py."""
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from students.tests.helpers import ENGINES, PASSWORD, REAL_NOW, use_engine


@pytest.fixture(autouse=True)
def _fresh_default_cache():
    # locmem outlives a test; a cutoff cached by one test must not leak into the next.
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The real hasher is slow by design; these tests log in dozens of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(db):
    User = get_user_model()
    return {
        "alice": User.objects.create_user("alice", password=PASSWORD),
        "carol": User.objects.create_user("carol", password=PASSWORD),
        "teacher": User.objects.create_user("teacher", password=PASSWORD, is_staff=True),
    }


@pytest.fixture(params=ENGINES)
def engine(request, settings, tmp_path):
    use_engine(settings, tmp_path, request.param)
    return request.param


@pytest.fixture
def clock(monkeypatch):
    """clock(instant) pins Django's clock from then on (day D: students.tests.helpers.D)."""
    pinned = {}
    monkeypatch.setattr("django.utils.timezone.now", lambda: pinned.get("now") or REAL_NOW())

    def set_to(instant):
        pinned["now"] = instant
    return set_to
