"""Turn the DATABASE_URL / CACHE_URL environment strings into Django settings dicts.

Small on purpose: only the schemes this project documents. Anything else is an
ImproperlyConfigured error naming the variable and the scheme, so a typo in the
deployment's environment fails loudly at start-up instead of silently using SQLite.

The URLs hold passwords, and these errors reach the role's output, the job's log and the failure
mail: an error shows a URL only as shown() does (its scheme and host), never its user, password,
path or query. (dj-database-url's errors hold no secret either, but it takes a URL without a
database name or with a relative SQLite path without a word; hence this parser.)
"""
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql"}


def shown(url):
    """The URL as errors may show it: scheme://host[:port]/… (no user, password, path or query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "…"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if not parts.scheme:
        return "…"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        # Not a number: a password with an unencoded / # ? @ cut the URL short, so what stands for
        # the host is the user name and the "port" a piece of the password. Show neither.
        return f"{parts.scheme}://…"
    return f"{parts.scheme}://{host}{port}/…"


def _split(name, url):
    """urlsplit, and the port checked, with an error that shows no secret (urllib's may quote a
    piece of a password that holds an unencoded / # ? or @: it ends up where the port goes)."""
    encode = "percent-encode any / # ? @ : in the user name or password"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when it is not a number from 0 to 65535
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} ({shown(url)}) is not a valid URL or its port is not a number from 0 to 65535; {encode}"
        ) from None  # the chained error would print urllib's message, which may quote the password
    if parts.netloc and "@" in parts.path + parts.query + parts.fragment:
        # A password with a / # or ? cut the URL short where it did not make the port a non-number
        # (postgres://u:1234/5@h/db): what stands for the host and port is not, so show neither.
        raise ImproperlyConfigured(f"{name} ({parts.scheme}://…) has an @ after its host; {encode}")
    return parts


def _sqlite_path(url_path, base_dir):
    # sqlite:////abs/path.db is absolute; sqlite:///rel.db is relative to the project folder
    # (the same convention as SQLAlchemy and dj-database-url).
    if url_path.startswith("//"):
        return Path(url_path[1:])
    return Path(base_dir) / url_path.lstrip("/")


def database_from_url(url, base_dir):
    """Return a DATABASES["default"] dict for a sqlite:// or postgres:// URL."""
    parts = _split("DATABASE_URL", url)
    if parts.scheme == "sqlite":
        if not parts.path.strip("/"):
            raise ImproperlyConfigured(f"DATABASE_URL ({shown(url)}) names no SQLite file")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": _sqlite_path(parts.path, base_dir)}
    if parts.scheme in _POSTGRES_SCHEMES:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL ({shown(url)}) names no database")
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
    parts = _split("CACHE_URL", url)
    query = dict(parse_qsl(parts.query))
    extra = {}
    if "key_prefix" in query:
        extra["KEY_PREFIX"] = query.pop("key_prefix")
    if "version" in query:
        try:
            extra["VERSION"] = int(query.pop("version"))
        except ValueError:
            raise ImproperlyConfigured(f"CACHE_URL ({shown(url)}) has a version that is not a whole number") from None
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
