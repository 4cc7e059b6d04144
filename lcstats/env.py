"""Turn the DATABASE_URL / CACHE_URL environment strings into Django settings dicts.

Small on purpose: only the schemes this project documents. Anything else is an
ImproperlyConfigured error naming the variable and the scheme, so a typo in the
deployment's environment fails loudly at start-up instead of silently using SQLite.
"""
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}


def _sqlite_path(url_path, base_dir):
    # sqlite:////abs/path.db is absolute; sqlite:///rel.db is relative to the project folder
    # (the same convention as SQLAlchemy and dj-database-url).
    if url_path.startswith("//"):
        return Path(url_path[1:])
    return Path(base_dir) / url_path.lstrip("/")


def database_from_url(url, base_dir):
    """Return a DATABASES["default"] dict for a sqlite:// or postgres:// URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if not parts.path.strip("/"):
            raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no SQLite file")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": _sqlite_path(parts.path, base_dir)}
    if parts.scheme in _POSTGRES_SCHEMES:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no database")
        options = dict(parse_qsl(parts.query))
        # Fail within seconds when the server is unreachable, not after the OS default.
        options.setdefault("connect_timeout", "10")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported (use sqlite:// or postgres://)"
    )


def cache_from_url(url, base_dir):
    """Return a CACHES["default"] dict for locmem://, redis://, rediss://, file:// or dummy://.

    Query parameters key_prefix and version set KEY_PREFIX and VERSION.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    extra = {}
    if "key_prefix" in query:
        extra["KEY_PREFIX"] = query.pop("key_prefix")
    if "version" in query:
        extra["VERSION"] = int(query.pop("version"))
    if query:
        raise ImproperlyConfigured(f"CACHE_URL has unknown parameters: {', '.join(sorted(query))}")
    if parts.scheme == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": parts.netloc or "default", **extra}
    if parts.scheme in {"redis", "rediss"}:
        location = parts._replace(query="").geturl()
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location, **extra}
    if parts.scheme == "file":
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": _sqlite_path(parts.path, base_dir), **extra}
    if parts.scheme == "dummy":
        return {"BACKEND": "django.core.cache.backends.dummy.DummyCache", **extra}
    raise ImproperlyConfigured(
        f"CACHE_URL scheme {parts.scheme!r} is not supported (use locmem://, redis://, file:// or dummy://)"
    )


SESSION_ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "cache": "django.contrib.sessions.backends.cache",
    "file": "django.contrib.sessions.backends.file",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


def session_engine(value):
    """A short name (db, cached_db, cache, file, signed_cookies) or a dotted module path."""
    if value in SESSION_ENGINES:
        return SESSION_ENGINES[value]
    if "." in value:
        return value
    raise ImproperlyConfigured(
        f"SESSION_ENGINE {value!r} is neither one of {', '.join(SESSION_ENGINES)} nor a dotted path"
    )


def flag(value):
    return value.strip().lower() in {"1", "true", "yes", "on"}
