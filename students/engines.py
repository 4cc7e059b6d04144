"""Which session engine is configured, as one of the kinds the purge knows how to handle."""
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends import cache, cached_db, db, file, signed_cookies


class UnsupportedEngine(Exception):
    """The configured session engine (or its cache) cannot be purged; the message says why."""


# Most specific first: cached_db's store is a subclass of db's.
_KINDS = (
    ("cached_db", cached_db.SessionStore),
    ("db", db.SessionStore),
    ("file", file.SessionStore),
    ("cache", cache.SessionStore),
    ("signed_cookies", signed_cookies.SessionStore),
)


@dataclass(frozen=True)
class Engine:
    kind: str          # db, cached_db, file, cache or signed_cookies
    path: str          # the SESSION_ENGINE setting
    store_class: type  # its SessionStore


def detect_engine(path=None):
    """Return the Engine for SESSION_ENGINE (or `path`); custom engines count by their base class."""
    path = path or settings.SESSION_ENGINE
    try:
        store_class = import_module(path).SessionStore
    except (ImportError, AttributeError) as exc:
        raise UnsupportedEngine(f"session engine {path!r} cannot be imported: {exc}") from exc
    for kind, base in _KINDS:
        if issubclass(store_class, base):
            return Engine(kind=kind, path=path, store_class=store_class)
    raise UnsupportedEngine(
        f"session engine {path!r} is not based on one of Django's engines "
        f"({', '.join(kind for kind, _ in _KINDS)}); it cannot be purged"
    )
