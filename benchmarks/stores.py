"""The stores: where a backend keeps its sessions, filled identically before each approach, and what
is left in them after it.

A database target (SQLite, copied from a template; PostgreSQL, TRUNCATE + COPY FREEZE) holds users, run
records, the ownership index and, for the db and cached_db engines, the session table; Redis (cache and
cached_db) or a session folder (file) hold the rest, beside unrelated keys or files that no purge may
touch. `Store` puts them together for one backend; `configure` points lcstats.settings at them.
"""
import datetime as dt
import io
import os
import pickle
import shutil
import tempfile
from pathlib import Path

from benchmarks.fill import SESSION_COOKIE_AGE, utc_timestamp

INDEX_TABLE = "students_sessionowner"  # students.models.SessionOwner: the ownership index (issue 22)
# SESSION_ENGINE of each backend; the peers that need the session table run only where there is one.
ENGINES = {"sqlite": "db", "postgres": "db", "cached_db-redis": "cached_db", "cache-redis": "cache",
           "file": "file"}
KEY = "0123456789abcdefghijklmnopqrstuv"  # shaped like a Django session key: 32 of [0-9a-z]
# Keys of other tenants of the session cache's Redis database, which no purge may touch: other
# programs, other Django cache entries, session-looking keys under another version or KEY_PREFIX (the
# bench's own cache settings: KEY_PREFIX "", VERSION 1).
UNRELATED_REDIS = {
    "celery-task-meta-5a1c": b"another program's key",
    ":1:students:statistics-page": b"a Django cache entry of the site",
    f":2:django.contrib.sessions.cache{KEY}": b"a session of another VERSION",
    f":2:django.contrib.sessions.cached_db{KEY}": b"a session of another VERSION",
    f"othersite:1:django.contrib.sessions.cache{KEY}": b"another KEY_PREFIX",
    f"othersite:1:django.contrib.sessions.cached_db{KEY}": b"another KEY_PREFIX",
}
# The other session engine's key under the same KEY_PREFIX and VERSION: cached_db's prefix begins with
# the cache engine's, so a SCAN MATCH of "...sessions.cache*" would take a cached_db entry.
OTHER_ENGINE_KEY = {
    "cache": {f":1:django.contrib.sessions.cached_db{KEY}": b"a cached_db entry of a site sharing the database"},
    "cached_db": {f":1:django.contrib.sessions.cache{KEY}": b"a cache-engine session of a site sharing it"},
}
# Files beside the sessions in SESSION_FILE_PATH that are not sessions (the cookie name is sessionid).
UNRELATED_FILES = {
    "README.txt": "another program's file",
    "sessionid-export.csv": "the cookie name, but no session key after it",
    f"sessionid{KEY}_out_k2x9": "a save in progress: Django's temp file",
    f"archive/sessionid{KEY}": "a session-named file in a subfolder",
    f"sessionid{KEY[::-1]}/notes.txt": "a folder named like a session",
}
UNRELATED_LINKS = {f"sessionid{KEY[1:]}a": "README.txt"}  # a link named like a session, to a sibling


def configure(backend, database_url, cache_url, session_folder=None):
    """Point lcstats.settings at the benchmark's servers (must run before django.setup())."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "lcstats.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["CACHE_URL"] = cache_url
    os.environ["SESSION_ENGINE"] = ENGINES[backend]
    if session_folder:
        os.environ["SESSION_FILE_PATH"] = str(session_folder)
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-secret-key-" + "x" * 40)
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")


def session_cache_head():
    """The Redis key of session `` on this engine: make_key(<engine's cache key prefix>)."""
    from importlib import import_module

    from django.conf import settings
    from django.core.cache import caches

    prefix = import_module(settings.SESSION_ENGINE).KEY_PREFIX
    return caches[settings.SESSION_CACHE_ALIAS].make_key(prefix)


def glob_escape(text):
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# Django makes every session key of 32 VALID_KEY_CHARS (lowercase letters and digits).
SESSION_KEY_GLOB = "[0-9a-z]" * 32


def is_session_key(text):
    return len(text) == 32 and text.isalnum() and text.isascii() and text == text.lower()


class SQLiteTarget:
    """Fill a template database once; each run copies it, so every approach sees the same file.
    The session table gets the fill's rows only when the engine keeps sessions there."""

    def __init__(self, workdir, with_sessions=True):
        self.path = Path(workdir) / "bench.sqlite3"
        self.template = Path(workdir) / "template.sqlite3"
        self.url = f"sqlite:///{self.path}"
        self.with_sessions = with_sessions

    def load_once(self, fill):
        from django.db import connection, transaction

        # One transaction: in autocommit every row would be its own commit (and fsync).
        with transaction.atomic(), connection.cursor() as cur:
            cur.executemany("INSERT INTO django_session (session_key, session_data, expire_date) "
                            "VALUES (%s, %s, %s)",
                            ((k, d, e.isoformat(" ")) for k, d, e, _ in fill.rows if self.with_sessions))
            cur.executemany(f"INSERT INTO {INDEX_TABLE} (session_key, user_id, zone, logged_in_at, user_agent) "
                            "VALUES (%s, %s, %s, %s, '')", fill.index_rows())
        connection.close()
        shutil.copyfile(self.path, self.template)

    def refill(self, fill):
        from django.db import connection

        connection.close()
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        shutil.copyfile(self.template, self.path)
        # Flush the copy now, or the first commit of the approach pays for writing the whole file.
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())


class PostgresTarget:
    """TRUNCATE + COPY FREEZE + ANALYZE + CHECKPOINT: the same table state before each approach."""

    def __init__(self, url):
        self.url = url

    def load_once(self, fill):
        buf = io.StringIO()
        for k, d, e, _ in fill.rows:
            buf.write(f"{k}\t{d}\t{e.isoformat(' ')}+00\n")
        self.copy_data = buf.getvalue()
        self.copy_index = "".join("\t".join(row) + "\t\n" for row in fill.index_rows())
        self.refill(fill)

    def refill(self, fill):
        from django.db import connection, transaction

        # TRUNCATE and COPY FREEZE in one transaction: rows land already frozen, as after a VACUUM.
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("TRUNCATE django_session")
            raw = cur.cursor  # psycopg 3 cursor, for COPY
            with raw.copy("COPY django_session (session_key, session_data, expire_date) "
                          "FROM STDIN (FREEZE)") as cp:
                cp.write(self.copy_data)
            cur.execute(f"TRUNCATE {INDEX_TABLE}")
            with raw.copy(f"COPY {INDEX_TABLE} (session_key, user_id, zone, logged_in_at, user_agent) "
                          "FROM STDIN (FREEZE)") as cp:
                cp.write(self.copy_index)
        with connection.cursor() as cur:
            cur.execute("ANALYZE django_session")
            cur.execute(f"ANALYZE {INDEX_TABLE}")
            cur.execute("CHECKPOINT")  # so no approach pays for another's dirty pages
        connection.close()


def count_sessions():
    """How many rows django_session holds (bench_site_up.py counts them while the site runs)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM django_session")
        n = cur.fetchone()[0]
    connection.close()
    return n


def index_keys():
    """The session keys the ownership index's rows name."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"SELECT session_key FROM {INDEX_TABLE}")
        keys = {k for (k,) in cur.fetchall()}
    connection.close()
    return keys


def table_keys():
    """The session keys left in django_session."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT session_key FROM django_session")
        keys = {k for (k,) in cur.fetchall()}
    connection.close()
    return keys


class RedisSessions:
    """The live sessions in Redis as the engine (cache) or its cache (cached_db) keeps them: under
    make_key(<engine prefix> + key), pickled as Django's RedisCache pickles, each with the TTL its last
    save gave it (expiry - now), beside the unrelated keys of UNRELATED_REDIS."""

    def __init__(self, url):
        import redis

        from django.conf import settings

        self.client = redis.Redis.from_url(url)
        self.unrelated = {**UNRELATED_REDIS, **OTHER_ENGINE_KEY[settings.SESSION_ENGINE.rsplit(".", 1)[-1]]}

    def refill(self, fill):
        self.client.flushdb()
        head = session_cache_head()
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        pickled = {}  # one pickle per distinct payload (each user's, each anonymous kind)
        pipe = self.client.pipeline(transaction=False)
        for i, (key, _, expire, data) in enumerate(fill.live_rows, 1):
            if id(data) not in pickled:
                pickled[id(data)] = pickle.dumps(data, pickle.HIGHEST_PROTOCOL)
            pipe.set(head + key, pickled[id(data)], ex=int((expire - now).total_seconds()))
            if i % 5000 == 0:
                pipe.execute()
        pipe.mset(self.unrelated)
        pipe.execute()

    def check_format(self, fill):
        """The fill reads back through Django's own cache, as the session engine would read it."""
        from importlib import import_module

        from django.conf import settings
        from django.core.cache import caches

        key, _, _, data = fill.live_rows[0]
        prefix = import_module(settings.SESSION_ENGINE).KEY_PREFIX
        if caches[settings.SESSION_CACHE_ALIAS].get(prefix + key) != data:
            raise RuntimeError("a session written to Redis does not read back through Django's cache")

    def keys(self):
        head = session_cache_head()
        pattern = glob_escape(head) + SESSION_KEY_GLOB
        return {raw.decode()[len(head):] for raw in self.client.scan_iter(match=pattern, count=10000)}

    def unrelated_missing(self):
        values = self.client.mget(list(self.unrelated))
        return [k for (k, v), got in zip(self.unrelated.items(), values) if got != v]


class FileSessions:
    """Session files as Django's file engine writes them (<cookie name><key>, the signed data, the
    modification time of its last save), in a folder of their own, beside UNRELATED_FILES."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def refill(self, fill):
        from django.conf import settings

        # Empty the folder but keep it, as a site's session folder is an old one, not a fresh directory.
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        prefix = settings.SESSION_COOKIE_NAME
        for key, text, expire, _ in fill.rows:
            # os-level calls: no text layer, and the time set on the open file (200k files a refill)
            fd = os.open(self.folder / (prefix + key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, text.encode("ascii"))
                saved = utc_timestamp(expire) - SESSION_COOKIE_AGE
                os.utime(fd, (saved, saved))
            finally:
                os.close(fd)
        for name, text in UNRELATED_FILES.items():
            (self.folder / name).parent.mkdir(exist_ok=True)
            (self.folder / name).write_text(text)
        for name, target in UNRELATED_LINKS.items():
            (self.folder / name).symlink_to(target)
        # Written out now, so no approach pays for (or skips, by unlinking first) the pending writeback.
        os.sync()

    def check_format(self, fill):
        from django.contrib.sessions.backends.file import SessionStore

        key, _, _, data = fill.live_rows[0]
        if SessionStore(key).load() != data:
            raise RuntimeError("a session file does not load through Django's file SessionStore")

    def keys(self):
        from django.conf import settings

        prefix = settings.SESSION_COOKIE_NAME
        planted = {name.split("/")[0] for name in UNRELATED_FILES} | set(UNRELATED_LINKS)
        return {name[len(prefix):] for name in os.listdir(self.folder)
                if name.startswith(prefix) and name not in planted}

    def unrelated_missing(self):
        def intact(name, text):
            path = self.folder / name
            return path.is_file() and not path.is_symlink() and path.read_text() == text
        missing = [name for name, text in UNRELATED_FILES.items() if not intact(name, text)]
        return missing + [name for name, target in UNRELATED_LINKS.items()
                          if not (self.folder / name).is_symlink() or os.readlink(self.folder / name) != target]


class Store:
    """Everything an approach runs against for one backend: the database (users, runs and, for db and
    cached_db, the session table), plus Redis or the session folder; refilled identically each time."""

    def __init__(self, backend, database, redis_url=None, session_folder=None):
        self.backend = backend
        self.database = database
        self.redis = RedisSessions(redis_url) if redis_url else None
        self.files = FileSessions(session_folder) if session_folder else None

    def load_once(self, fill):
        self.database.load_once(fill)
        self.refill(fill)
        for outside in (self.redis, self.files):
            if outside:
                outside.check_format(fill)

    def refill(self, fill):
        self.database.refill(fill)
        fill.write_remembered()
        for outside in (self.redis, self.files):
            if outside:
                outside.refill(fill)

    def left(self):
        """What is left: the session keys in the engine's own store, cached_db's cache keys, and the
        unrelated keys or files that are missing or changed."""
        engine = ENGINES[self.backend]
        outside = self.redis or self.files
        return {
            "sessions": table_keys() if engine in ("db", "cached_db") else outside.keys(),
            "rows": index_keys(),
            "cache_keys": self.redis.keys() if engine == "cached_db" else None,
            "unrelated_missing": outside.unrelated_missing() if outside else [],
            "unrelated_planted": (len(self.redis.unrelated) if self.redis
                                  else len(UNRELATED_FILES) + len(UNRELATED_LINKS) if self.files else 0),
        }


def open_store(stack, backend):
    """The backend's store on throw-away servers (PostgreSQL and Redis from tests/support/servers.py, SQLite and
    the session folder in a temp folder), lcstats.settings pointed at it; all of it ends with `stack`.
    Returns (store, cache URL)."""
    from tests.support import servers  # imported here, not in the children: it imports pytest

    engine = ENGINES[backend]
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logout-"))
    if backend == "postgres" or engine == "cached_db":
        database = PostgresTarget(stack.enter_context(servers.postgres()))
    else:
        database = SQLiteTarget(workdir, with_sessions=engine == "db")
    cache_url = stack.enter_context(servers.redis()) if backend.endswith("-redis") else "locmem://"
    session_folder = Path(workdir) / "sessions" if engine == "file" else None
    if session_folder:
        session_folder.mkdir()  # Django's file engine refuses a folder that does not exist
    configure(backend, database.url, cache_url, session_folder)
    return Store(backend, database, cache_url if cache_url.startswith("redis") else None, session_folder), cache_url
