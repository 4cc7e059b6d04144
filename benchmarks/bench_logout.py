#!/usr/bin/env python3
"""Time `logout_all_users` against the floor of its session engine and two common peers, side by side.

Backends (--backend): sqlite and postgres (the db engine), cached_db-redis (cached_db on PostgreSQL +
Django's RedisCache), cache-redis (the cache engine on Django's RedisCache; users and run records in
SQLite) and file (the file engine, SESSION_FILE_PATH a fresh folder in the benchmark's temp folder; users
in SQLite). It fills the store with N sessions in a realistic mix (live students, 5% of all sessions
"keep me signed in" ones with their RememberedLogin rows, live staff, anonymous, expired; data encoded by
Django's own SessionStore; one ownership-index row per login session, as the server writes at login),
then runs each approach on an identical refill, each in its own child process so one approach's memory
never shows up in another's figure:

  floor            the cheapest correct purge of that store, nothing decoded:
                     db         one raw SQL `DELETE FROM django_session` (every floor also empties the
                                index's table: `DELETE FROM students_sessionowner`)
                     cached_db  one `DELETE ... RETURNING session_key`, then UNLINK of those cache keys
                                in batches of 1,000, pipelined
                     cache      SCAN MATCH the session keys (32 key chars after the engine's prefix)
                                + UNLINK in batches of 1,000, pipelined
                     file       os.scandir + unlink of the regular files named <cookie name><session key>
  naive            Session.objects.all().delete() then `clearsessions` (db and cached_db only)
  per_session      SessionStore(key).delete() for every key (what ansible/awx's expire_sessions does);
                   with --per-session-limit it runs on the first K keys and the time is extrapolated
                   (db and cached_db only)
  ours             `logout_all_users`
  ours_keep_staff  `logout_all_users --keep-staff`
  ours_keep_remembered  `logout_all_users --keep-remembered`: keeps the remembered sessions (5% of the fill),
                   each checked against its row; every other session goes
  ours_late        `logout_all_users --scheduled` fired 6 hours late (a recorded schedule whose latest
                   time was 6 h ago): it spares sessions that began after that time, so it decodes
                   those saved since (about 6 h / 13 days of the fill)
  ours_zone_hour   `logout_all_users --scheduled` in per-user time zone mode, one of its 24 hourly runs
                   a day (record_zone_hour): every tenth student's zone is Asia/Tokyo, everyone else has
                   none (the schedule's, UTC), and the run stands for Tokyo's time an hour ago. It
                   deletes the Tokyo users' sessions (7.5% of the live ones) and the expired ones;
                   every other session stays. With the ownership index (issue 22) it deletes the
                   Tokyo users' sessions by the keys their rows give and reads only the sessions
                   without a row (the anonymous ones).
  floor_zone_keys  ours_zone_hour's floor: deleting exactly what it deletes, by key, the keys already
                   known (the Tokyo users' rows, read before the clock starts): their sessions and
                   rows (cached_db: and cache entries), then the expired sessions and their rows

Before each approach it plants unrelated Redis keys (other key prefixes, versions, cache entries) or
unrelated files in the session folder; after it, it checks what is left: exactly the sessions the
approach must keep (by key, against the fill), no cache key but those, and every unrelated key or file
untouched. It prints a table (median wall time, ratio to the floor, cost per session, peak RSS of the
child, what is left) and the command that reproduces it; --doc writes the table into docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_logout.py --backend sqlite -n 1000000 --doc docs/benchmarks.md

PostgreSQL and Redis are started for the run (throw-away instances from tests/servers.py).
"""
import argparse
import contextlib
import datetime as dt
import io
import json
import os
import pickle
import platform
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

APPROACHES = ["floor", "naive", "per_session", "ours", "ours_keep_staff", "ours_keep_remembered", "ours_late",
              "ours_zone_hour", "floor_zone_keys"]
INDEX_TABLE = "students_sessionowner"  # students.models.SessionOwner: the ownership index (issue 22)
# SESSION_ENGINE of each backend; the peers that need the session table run only where there is one.
ENGINES = {"sqlite": "db", "postgres": "db", "cached_db-redis": "cached_db", "cache-redis": "cache",
           "file": "file"}
TABLE_ONLY = {"naive", "per_session"}
LEAVE_ROWS = {"naive", "per_session"}  # the peers know nothing of the index: its rows are not checked after them
BENCH_PASSWORD = "bench-password-1"  # every generated user has it, so bench_site_up can log in
SESSION_COOKIE_AGE = 14 * 86400  # Django's default, which lcstats keeps: a save sets expiry = save + this
FLOOR_BATCH = 1000  # keys per UNLINK in the Redis floors
# The mix of a busy term-time site: most sessions belong to logged-in students, a few to staff,
# some are anonymous (language choice, messages), a fifth are expired and waiting for clearsessions.
# "remembered": students who ticked "Keep me signed in" (students.remember): a marker, an expiry fixed at
# login + SESSION_COOKIE_AGE, and a RememberedLogin row each.
MIX = [("staff", 0.005), ("student", 0.550), ("remembered", 0.050), ("anonymous", 0.195),
       ("expired_user", 0.140), ("expired_anonymous", 0.060)]
ANONYMOUS_DATA = [{"django_language": "ga"}, {"django_language": "en-gb"},
                  {"_messages": '[["__json_message",0,20,"Please log in to see your statistics."]]'}]
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
ZONE_HOUR_ZONE = "Asia/Tokyo"  # ours_zone_hour: the zone its hourly run stands for
ZONE_HOUR_EVERY = 10  # every tenth student (by id) lives there


# ---------------------------------------------------------------- environment and Django
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


def peak_rss_kb():
    """VmHWM, the peak resident set of this process since it was exec'd, plus the peak of the
    largest process it forked and waited for (--keep-staff's sorter on PostgreSQL), counted as if
    both peaked at once: an upper bound."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    raise RuntimeError("no VmHWM in /proc/self/status")


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


# ---------------------------------------------------------------- the fill
class Fill:
    """N sessions, generated once from a seed and loaded again, identically, before each approach.

    live_only: no expired sessions (the cache engine: Redis drops a key when its TTL runs out)."""

    def __init__(self, n, seed=1, live_only=False):
        self.n = n
        self.seed = seed
        self.mix = [(kind, share) for kind, share in MIX if not (live_only and kind.startswith("expired"))]
        self.counts = {kind: 0 for kind, _ in self.mix}
        self.rows = []  # (session_key, session_data, expire_date as naive UTC datetime, decoded data)
        self.keys_of = {kind: set() for kind, _ in self.mix}
        self.remembered = []  # (session_key, user id, login time as epoch seconds): the RememberedLogin rows
        self.zone_hour_keys = set()  # sessions of the users in ZONE_HOUR_ZONE: what ours_zone_hour logs out
        self.owners = []  # (session_key, user id, login time as epoch seconds): the ownership index's rows

    def create_users(self):
        """One user per ten sessions; 1 in 500 is staff. Returns (student ids, staff ids)."""
        from django.contrib.auth.hashers import make_password
        from django.contrib.auth.models import User

        password = make_password(BENCH_PASSWORD)  # hashed once: PBKDF2 is slow on purpose
        n_users = max(10, self.n // 10)
        n_staff = max(2, n_users // 500)
        users = [User(username=f"student{i:07d}", password=password, is_staff=False)
                 for i in range(n_users - n_staff)]
        users += [User(username=f"staff{i:05d}", password=password, is_staff=True)
                  for i in range(n_staff)]
        User.objects.bulk_create(users, batch_size=5000)
        ids = dict(User.objects.values_list("id", "is_staff"))
        return [i for i, s in ids.items() if not s], [i for i, s in ids.items() if s], password

    def generate(self):
        """Encode one real session payload per user (signed by Django), then pick cheaply per row."""
        from django.conf import settings
        from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, BACKEND_SESSION_KEY
        from django.contrib.auth.models import User
        from importlib import import_module

        from students.selection import LOGIN_TIME_KEY
        from students.selection import REMEMBERED_KEY

        if settings.SESSION_COOKIE_AGE != SESSION_COOKIE_AGE:
            raise RuntimeError(f"the fill assumes SESSION_COOKIE_AGE = {SESSION_COOKIE_AGE}")
        students, staff, _ = self.create_users()
        zone_hour_users = set(zone_hour_user_ids(students))
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        user_hash = User.objects.get(id=students[0]).get_session_auth_hash()  # same password for all

        login_time = time.time() - 86400  # students.cutoff stamps every login with this key

        def payload(uid):
            return {SESSION_KEY: str(uid), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user_hash, LOGIN_TIME_KEY: login_time}

        self.payloads = {uid: payload(uid) for uid in students + staff}
        # A remembered login: expiry fixed at the login (set_expiry with a datetime stores it in the data).
        remembered_until = dt.datetime.fromtimestamp(login_time + SESSION_COOKIE_AGE, dt.timezone.utc)
        remembered_payloads = {}

        def remembered_payload(uid):
            if uid not in remembered_payloads:
                data = {**self.payloads[uid], REMEMBERED_KEY: True, "_session_expiry": remembered_until.isoformat()}
                remembered_payloads[uid] = (data, store.encode(data).split(":")[0])
            return remembered_payloads[uid]
        # Django encodes `<payload>:<timestamp>:<signature>`. Encode each user's payload once, then give
        # every session its own timestamp and a real signature: unique, valid data at ~2 us a row.
        encoded = {uid: store.encode(data).split(":")[0] for uid, data in self.payloads.items()}
        anonymous = [(d, store.encode(d).split(":")[0]) for d in ANONYMOUS_DATA]
        sign = session_signer(store)
        rng = random.Random(self.seed)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        cumulative, total, whole = [], 0.0, sum(share for _, share in self.mix)
        for kind, share in self.mix:
            total += share
            cumulative.append((total / whole, kind))
        for _ in range(self.n):
            r = rng.random()
            kind = next((k for c, k in cumulative if r < c), cumulative[-1][1])
            self.counts[kind] += 1
            key = "%032x" % rng.getrandbits(128)
            self.keys_of[kind].add(key)
            if kind in ("student", "expired_user"):
                uid = rng.choice(students)
                data, text = self.payloads[uid], encoded[uid]
            elif kind == "staff":
                uid = rng.choice(staff)
                data, text = self.payloads[uid], encoded[uid]
            elif kind == "remembered":
                uid = rng.choice(students)
                data, text = remembered_payload(uid)
                self.remembered.append((key, uid, login_time))
            else:
                data, text = rng.choice(anonymous)
            if kind in ("student", "remembered", "expired_user") and uid in zone_hour_users:
                self.zone_hour_keys.add(key)
            if kind in ("student", "staff", "remembered", "expired_user"):  # a login: the server wrote its row
                self.owners.append((key, uid, login_time))
            if kind == "remembered":
                expire = remembered_until.replace(tzinfo=None)  # fixed at login; last saved at the login
            elif kind.startswith("expired"):
                expire = now - dt.timedelta(seconds=rng.uniform(60, 30 * 86400))
            else:
                expire = now + dt.timedelta(seconds=rng.uniform(86400, 14 * 86400))
            # Saved when it was last modified: SESSION_COOKIE_AGE before it expires.
            self.rows.append((key, sign(text, utc_timestamp(expire) - SESSION_COOKIE_AGE), expire, data))
        sample = self.rows[0]
        if store.decode(sample[1]) != sample[3]:
            raise RuntimeError("generated session data does not decode: Django's signing format changed?")

    @property
    def live_rows(self):
        """What cached_db (and the cache engine) holds in Redis: every live session."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return [row for row in self.rows if row[2] > now]

    @property
    def indexed_keys(self):
        return {key for key, _, _ in self.owners}

    def index_rows(self):
        """The index's rows as text lines for COPY / executemany: key, user id, zone (none stamped in
        this fill), login time (UTC)."""
        for key, uid, login in self.owners:
            yield key, str(uid), "", dt.datetime.fromtimestamp(login, dt.timezone.utc).isoformat(" ")

    def must_keep(self, approach):
        if approach in ("ours_zone_hour", "floor_zone_keys"):  # every live session but the Tokyo users'
            # (all began a day ago)
            live = set().union(*(keys for kind, keys in self.keys_of.items() if not kind.startswith("expired")))
            return live - self.zone_hour_keys
        return {"ours_keep_staff": self.keys_of["staff"],
                "ours_keep_remembered": self.keys_of["remembered"]}.get(approach, set())

    def write_remembered(self):
        """The RememberedLogin rows of the fill's remembered sessions, as the login view writes them."""
        from django.db import connection

        from students.models import RememberedLogin

        RememberedLogin.objects.all().delete()
        RememberedLogin.objects.bulk_create(
            (RememberedLogin(session_key=key, user_id=str(uid),
                             logged_in_at=dt.datetime.fromtimestamp(login, dt.timezone.utc),
                             expires_at=dt.datetime.fromtimestamp(login + SESSION_COOKIE_AGE, dt.timezone.utc))
             for key, uid, login in self.remembered), batch_size=5000)
        connection.close()

    def judge(self, approach, left):
        """What is wrong with what an approach left (empty: nothing). ours_late spares anonymous
        sessions saved since the time it stands for (every login in the fill is a day old, so no
        signed-in one): some of the live anonymous ones, nothing else."""
        wrong = []
        if approach == "ours_late":
            if not left["sessions"] <= self.keys_of["anonymous"]:
                wrong.append(f"{len(left['sessions'] - self.keys_of['anonymous']):,} non-anonymous sessions left")
        elif left["sessions"] != self.must_keep(approach):
            wrong.append(f"sessions left: {len(left['sessions']):,}, of which "
                         f"{len(left['sessions'] - self.must_keep(approach)):,} should be gone and "
                         f"{len(self.must_keep(approach) - left['sessions']):,} kept ones are missing")
        # cached_db: no cache key may outlive its row (Session.objects.all().delete() leaves them all).
        if left["cache_keys"] is not None and approach != "naive":
            stale = left["cache_keys"] - left["sessions"]
            if stale:
                wrong.append(f"{len(stale):,} cache keys of deleted sessions left")
        if left["unrelated_missing"]:
            wrong.append("unrelated deleted or changed: " + ", ".join(left["unrelated_missing"]))
        # The index follows: exactly the rows of the indexed sessions left (none of a deleted session).
        if approach not in LEAVE_ROWS and left["rows"] != self.indexed_keys & left["sessions"]:
            wrong.append(f"index rows left: {len(left['rows']):,}, of which "
                         f"{len(left['rows'] - left['sessions']):,} of deleted sessions; "
                         f"{len(self.indexed_keys & left['sessions'] - left['rows']):,} rows of sessions left "
                         "are missing")
        return wrong


def utc_timestamp(naive_utc):
    return naive_utc.replace(tzinfo=dt.timezone.utc).timestamp()


def session_signer(store):
    """sign(payload, when) -> the string signing.dumps() would have made at `when` (epoch seconds).

    Same algorithm as django.core.signing (TimestampSigner, salted HMAC), with the HMAC key derived
    once instead of per call; Fill.generate() checks the result with SessionStore.decode()."""
    import hashlib
    import hmac

    from django.conf import settings
    from django.core import signing

    signer = signing.TimestampSigner(salt=store.key_salt)
    hasher = getattr(hashlib, signer.algorithm)
    key = hasher(f"{store.key_salt}signer{settings.SECRET_KEY}".encode()).digest()
    base = hmac.new(key, digestmod=hasher)

    def sign(payload, when):
        value = f"{payload}:{signing.b62_encode(int(when))}"
        mac = base.copy()
        mac.update(value.encode())
        return f"{value}:{signing.b64_encode(mac.digest()).decode()}"

    return sign


# ---------------------------------------------------------------- where the sessions live
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


# ---------------------------------------------------------------- the approaches (child side)
def run_child(approach, limit):
    """Run one approach in this fresh process and print one JSON line with its figures."""
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.sessions.models import Session
    from django.core.management import call_command, get_commands, load_command_class
    from django.db import connection

    # Connect and import before the clock starts: every approach gets the same warm start.
    connection.ensure_connection()
    if approach.startswith("ours"):
        load_command_class(get_commands()["logout_all_users"], "logout_all_users")
    if approach == "ours_late":
        record_late_schedule()
    if approach in ("ours_zone_hour", "floor_zone_keys"):
        record_zone_hour()
    engine = import_module(settings.SESSION_ENGINE)
    floor = floor_for(settings.SESSION_ENGINE.rsplit(".", 1)[-1]) if approach == "floor" else None
    if approach == "floor_zone_keys":
        floor = zone_keys_floor_for(settings.SESSION_ENGINE.rsplit(".", 1)[-1])
    out, processed = io.StringIO(), None

    start = time.perf_counter()
    if approach in ("floor", "floor_zone_keys"):
        floor()
    elif approach == "naive":
        Session.objects.all().delete()
        call_command("clearsessions", stdout=out)
    elif approach == "per_session":
        keys = Session.objects.values_list("session_key", flat=True)
        keys = list(keys[:limit] if limit else keys)
        for key in keys:
            engine.SessionStore(key).delete()
        processed = len(keys)
    elif approach == "ours":
        call_command("logout_all_users", stdout=out, stderr=out)
    elif approach == "ours_keep_staff":
        call_command("logout_all_users", "--keep-staff", stdout=out, stderr=out)
    elif approach == "ours_keep_remembered":
        call_command("logout_all_users", "--keep-remembered", stdout=out, stderr=out)
    elif approach in ("ours_late", "ours_zone_hour"):
        call_command("logout_all_users", "--scheduled", stdout=out, stderr=out)
    seconds = time.perf_counter() - start

    print(json.dumps({"seconds": seconds, "peak_rss_kb": peak_rss_kb(), "processed": processed,
                      "output": out.getvalue().strip().splitlines()[-2:]}))


def floor_for(engine):
    """The cheapest correct purge of the engine's store, nothing read or decoded, prepared (connections
    open, names resolved) so that calling it is all the clock sees."""
    from django.conf import settings
    from django.db import connection

    def unlink_all(client, names):
        """UNLINK in batches of FLOOR_BATCH, ten batches per round trip."""
        pipe, batch = client.pipeline(transaction=False), []
        for name in names:
            batch.append(name)
            if len(batch) == FLOOR_BATCH:
                pipe.unlink(*batch)
                batch = []
                if len(pipe) == 10:
                    pipe.execute()
        if batch:
            pipe.unlink(*batch)
        pipe.execute()

    def empty_index():
        with connection.cursor() as cur:
            cur.execute(f"DELETE FROM {INDEX_TABLE}")

    if engine == "db":
        def floor():
            with connection.cursor() as cur:
                cur.execute("DELETE FROM django_session")
                cur.execute(f"DELETE FROM {INDEX_TABLE}")
    elif engine in ("cache", "cached_db"):
        import redis

        client = redis.Redis.from_url(os.environ["CACHE_URL"])
        client.ping()  # connected before the clock starts
        head = session_cache_head()
        if engine == "cache":
            def floor():
                unlink_all(client, client.scan_iter(match=glob_escape(head) + SESSION_KEY_GLOB, count=FLOOR_BATCH))
                empty_index()
        else:
            def floor():
                with connection.cursor() as cur:
                    cur.execute("DELETE FROM django_session RETURNING session_key")
                    unlink_all(client, (head + key for rows in iter(lambda: cur.fetchmany(FLOOR_BATCH), [])
                                        for (key,) in rows))
                empty_index()
    elif engine == "file":
        folder, prefix = settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME

        def floor():
            with os.scandir(folder) as entries:
                for entry in entries:
                    if (entry.name.startswith(prefix) and is_session_key(entry.name[len(prefix):])
                            and entry.is_file(follow_symlinks=False)):
                        os.unlink(entry.path)
            empty_index()
    else:
        raise ValueError(f"no floor for session engine {engine!r}")
    return floor


def zone_keys_floor_for(engine):
    """ours_zone_hour's floor: delete exactly what it must, by key, the due users' keys read from the
    index before the clock starts: their sessions and rows (and cached_db's cache entries), then the
    expired sessions (found by the store's own expiry: expire_date, or a file's mtime) and their rows."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from students.models import SessionOwner, UserTimeZone

    due_users = [str(uid) for uid in UserTimeZone.objects.filter(zone=ZONE_HOUR_ZONE).values_list("user_id", flat=True)]
    keys = []
    for start in range(0, len(due_users), 500):
        keys += SessionOwner.objects.filter(user_id__in=due_users[start:start + 500]).values_list(
            "session_key", flat=True)
    postgres = connection.vendor == "postgresql"

    def delete_keys(cur, table, column, some):
        if postgres:
            cur.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", [list(some)])
            return
        for start in range(0, len(some), 500):
            part = some[start:start + 500]
            cur.execute(f"DELETE FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(part))})", part)

    if engine in ("db", "cached_db"):
        client = None
        if engine == "cached_db":
            import redis

            client = redis.Redis.from_url(os.environ["CACHE_URL"])
            client.ping()
            head = session_cache_head()

        def floor():
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            with transaction.atomic(), connection.cursor() as cur:
                delete_keys(cur, "django_session", "session_key", keys)
                delete_keys(cur, INDEX_TABLE, "session_key", keys)
                cur.execute("DELETE FROM django_session WHERE expire_date <= %s RETURNING session_key", [now])
                delete_keys(cur, INDEX_TABLE, "session_key", [key for (key,) in cur.fetchall()])
            if client is not None:
                pipe = client.pipeline(transaction=False)
                for start in range(0, len(keys), FLOOR_BATCH):
                    pipe.unlink(*[head + key for key in keys[start:start + FLOOR_BATCH]])
                pipe.execute()
        return floor
    if engine == "cache":
        import redis

        client = redis.Redis.from_url(os.environ["CACHE_URL"])
        client.ping()
        head = session_cache_head()

        def floor():
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(keys), FLOOR_BATCH):
                pipe.unlink(*[head + key for key in keys[start:start + FLOOR_BATCH]])
            pipe.execute()
            with transaction.atomic(), connection.cursor() as cur:
                delete_keys(cur, INDEX_TABLE, "session_key", keys)
        return floor
    if engine == "file":
        folder, prefix = settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME

        def floor():
            gone = list(keys)
            for key in keys:
                os.unlink(os.path.join(folder, prefix + key))
            due, now = set(keys), time.time()
            with os.scandir(folder) as entries:  # the expired ones: only their mtime says so
                for entry in entries:
                    key = entry.name[len(prefix):]
                    if (entry.name.startswith(prefix) and is_session_key(key) and key not in due
                            and entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime + SESSION_COOKIE_AGE <= now):
                        os.unlink(entry.path)
                        gone.append(key)
            with transaction.atomic(), connection.cursor() as cur:
                delete_keys(cur, INDEX_TABLE, "session_key", gone)
        return floor
    raise ValueError(f"no floor for session engine {engine!r}")


def record_late_schedule(hours_late=6):
    """A schedule recorded two days ago whose latest time was `hours_late` ago, and no run standing
    for it yet: what a scheduled run fired that late finds."""
    from django.utils import timezone

    from students.models import LogoutRun, LogoutSchedule

    now = timezone.now()
    LogoutRun.objects.filter(stands_for__isnull=False).delete()
    # per_user_zones off: on PostgreSQL the row outlives a refill, and ours_zone_hour turns it on.
    LogoutSchedule.objects.update_or_create(pk=1, defaults=dict(
        times=[f"{now - dt.timedelta(hours=hours_late):%H:%M}"], timezone="UTC", scheduler="cron",
        recorded_at=now - dt.timedelta(days=2), previous_cutoffs=[], per_user_zones=False))


def zone_hour_user_ids(student_ids):
    """The students in ZONE_HOUR_ZONE: every ZONE_HOUR_EVERY-th by id (the fill and the child agree)."""
    return sorted(student_ids)[::ZONE_HOUR_EVERY]


def record_zone_hour():
    """What an hourly run in per-user time zone mode finds: a per-user schedule recorded two days ago
    (zone UTC) whose time is ZONE_HOUR_ZONE's wall time an hour ago, every tenth student in that zone,
    and a successful run that already stands for UTC's latest instant of that time, so only
    ZONE_HOUR_ZONE is due. Runs left by other approaches go (a manual run would cover every zone)."""
    from zoneinfo import ZoneInfo

    from django.contrib.auth.models import User
    from django.utils import timezone

    from students.schedule_store import stored_schedule
    from students.models import LogoutRun, LogoutSchedule, UserTimeZone

    now = timezone.now()
    LogoutRun.objects.all().delete()
    UserTimeZone.objects.all().delete()
    students = User.objects.filter(is_staff=False).values_list("id", flat=True)
    UserTimeZone.objects.bulk_create((UserTimeZone(user_id=uid, zone=ZONE_HOUR_ZONE)
                                      for uid in zone_hour_user_ids(students)), batch_size=5000)
    local = now.astimezone(ZoneInfo(ZONE_HOUR_ZONE)) - dt.timedelta(hours=1)
    LogoutSchedule.objects.update_or_create(pk=1, defaults=dict(
        times=[f"{local:%H:%M}"], timezone="UTC", scheduler="cron", recorded_at=now - dt.timedelta(days=2),
        previous_cutoffs=[], per_user_zones=True))
    utc_done = stored_schedule().latest_instant(now, ZoneInfo("UTC"))
    LogoutRun.objects.create(started_at=utc_done, stands_for=utc_done, finished_at=utc_done, host="bench",
                             engine="bench", zones={"UTC": utc_done.isoformat()},
                             outcome=LogoutRun.Outcome.SUCCESS)


def spawn_child(approach, limit, profile=None):
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    cmd += [str(Path(__file__).resolve()), "--child", approach]
    if limit:
        cmd += ["--per-session-limit", str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"{approach} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- reporting
def versions(cache_url):
    import sqlite3

    import django

    info = {"Python": platform.python_version(), "Django": django.get_version(),
            "SQLite": sqlite3.sqlite_version}
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            info["PostgreSQL"] = cur.fetchone()[0]
    if cache_url.startswith("redis"):
        import redis

        info["Redis"] = redis.Redis.from_url(cache_url).info()["redis_version"]
    return info


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, load average {load} at the end of the run")


def run_header(versions_info):
    return (f"Run {dt.datetime.now().astimezone().isoformat(timespec='seconds')} on {machine()}; "
            + ", ".join(f"{k} {v}" for k, v in versions_info.items()) + ".")


WHERE = {
    "sqlite": "in SQLite's django_session",
    "postgres": "in PostgreSQL's django_session",
    "cached_db-redis": "in PostgreSQL's django_session; the {live:,} live ones also in Redis, as cached_db leaves them",
    "cache-redis": "in Redis (cache engine, no expired ones: Redis drops a key when its TTL runs out), each "
                   "with the TTL its last save gave it; users and run records in SQLite",
    "file": "as files in a folder of their own, each with its last save as modification time; users and "
            "run records in SQLite",
}


def render(args, fill, results, versions_info, command):
    floor = results.get("floor", {}).get("median")
    mix = (f"N = {args.n:,} sessions: " + ", ".join(f"{v:,} {k}" for k, v in fill.counts.items())
           + ", " + WHERE[args.backend].format(live=len(fill.live_rows)))
    planted = next(iter(results.values()))["unrelated_planted"] if results else 0
    lines = [
        run_header(versions_info),
        "",
        mix + ".",
        "",
        "| approach | wall time (median) | runs | x floor | µs/session | peak RSS | sessions left | cache keys left | index rows left | unrelated kept |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in APPROACHES:
        r = results.get(name)
        if not r:
            continue
        secs = f"{r['median']:.3f} s" + (" *" if r.get("extrapolated") else "")
        ratio = f"{r['median'] / floor:.2f}x" if floor else "-"
        left = "-" if r.get("extrapolated") else f"{r['left']:,}" + ("" if r["ok"] else " WRONG")
        keys = "-" if r["keys_left"] is None or r.get("extrapolated") else f"{r['keys_left']:,}"
        kept = f"{planted - r['unrelated_missing']}/{planted}" if planted else "-"
        rows = "-" if r.get("rows_left") is None or r.get("extrapolated") else f"{r['rows_left']:,}"
        lines.append(f"| {name} | {secs} | {len(r['times'])} | {ratio} | {r['median'] / args.n * 1e6:.2f} "
                     f"| {r['rss_mb']:.0f} MB | {left} | {keys} | {rows} | {kept} |")
    if any(r.get("extrapolated") for r in results.values()):
        r = results["per_session"]
        lines += ["", f"\\* per_session ran on the first {r['processed']:,} sessions "
                      f"({r['sample_seconds']:.1f} s) and its time is scaled to N."]
    if "ours_zone_hour" in results and "floor_zone_keys" in results:
        hour, keys_floor = results["ours_zone_hour"]["median"], results["floor_zone_keys"]["median"]
        lines += ["", f"ours_zone_hour is {hour / keys_floor:.2f}x floor_zone_keys (deleting exactly its sessions "
                      f"by key)" + (f" and {hour / floor:.2f}x the full purge's floor." if floor else ".")]
    wrong = [f"{name}: {'; '.join(r['wrong'])}" for name, r in results.items() if r["wrong"]]
    if wrong:
        lines += ["", "WRONG results: " + " / ".join(wrong)]
    lines += ["", "Reproduce:", "", "```", command, "```"]
    return "\n".join(lines)


def write_doc(path, section, text):
    """Replace this section (between its markers) in the doc, keeping everything else."""
    path = Path(path)
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    doc = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += f"\n## {section}\n\n{block}\n"
    path.write_text(doc)


# ---------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=list(ENGINES), default="sqlite")
    p.add_argument("-n", type=int, default=100_000, help="sessions to fill (default 100000)")
    p.add_argument("--runs", type=int, default=3, help="runs per approach; the median is reported")
    p.add_argument("--approaches", help=f"comma-separated subset of {','.join(APPROACHES)} (default: all that "
                                        "apply to the backend; naive and per_session need a session table)")
    p.add_argument("--per-session-limit", type=int, default=0,
                   help="run per_session on the first K keys only and scale its time to N (0 = all)")
    p.add_argument("--per-session-runs", type=int, default=1, help="runs for the slow per_session peer")
    p.add_argument("--profile", metavar="DIR", help="also write a cProfile of each approach's child here")
    p.add_argument("--doc", help="write the table into this markdown file (e.g. docs/benchmarks.md)")
    p.add_argument("--section", help="the doc's table to replace (between <!-- bench:SECTION --> markers; "
                                     "default: the backend's name)")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        return run_child(args.child, args.per_session_limit)

    applicable = [a for a in APPROACHES if ENGINES[args.backend] in ("db", "cached_db") or a not in TABLE_ONLY]
    approaches = [a.strip() for a in (args.approaches or ",".join(applicable)).split(",") if a.strip()]
    unknown = set(approaches) - set(applicable)
    if unknown or args.n < 1 or args.runs < 1:
        p.error(f"approaches {sorted(unknown)} do not apply to --backend {args.backend} (these do: "
                f"{','.join(applicable)})" if unknown else "-n and --runs must be >= 1")
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--json" and sys.argv[i:i + 1] != ["--json"]]
    command = " ".join([".venv/bin/python benchmarks/bench_logout.py", *map(shlex.quote, shown)])

    import servers  # tests/servers.py: the throw-away servers the tests use (not in children: it imports pytest)

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    engine = ENGINES[args.backend]
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logout-"))
        if args.backend == "postgres" or engine == "cached_db":
            database = PostgresTarget(stack.enter_context(servers.postgres()))
        else:
            database = SQLiteTarget(workdir, with_sessions=engine == "db")
        cache_url = stack.enter_context(servers.redis()) if args.backend.endswith("-redis") else "locmem://"
        session_folder = Path(workdir) / "sessions" if engine == "file" else None
        if session_folder:
            session_folder.mkdir()  # Django's file engine refuses a folder that does not exist
        configure(args.backend, database.url, cache_url, session_folder)
        store = Store(args.backend, database, cache_url if cache_url.startswith("redis") else None, session_folder)

        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        fill = Fill(args.n, live_only=engine == "cache")
        t = time.perf_counter()
        fill.generate()
        store.load_once(fill)
        print(f"filled {args.n:,} sessions in {time.perf_counter() - t:.1f} s: {fill.counts}", file=sys.stderr)
        info = versions(cache_url)

        results = {}
        for name in approaches:
            limit = args.per_session_limit if name == "per_session" else 0
            runs = args.per_session_runs if name == "per_session" else args.runs
            r = results[name] = {"times": [], "rss": [], "wrong": []}
            for i in range(runs):
                store.refill(fill)
                profile = os.path.join(args.profile, f"{args.backend}-{name}-{i}.prof") if args.profile else None
                res = spawn_child(name, limit, profile)
                left = store.left()
                seconds = res["seconds"]
                extrapolated = res["processed"] is not None and res["processed"] < args.n
                if extrapolated:
                    r.update(extrapolated=True, processed=res["processed"], sample_seconds=seconds)
                    seconds = seconds * args.n / res["processed"]
                wrong = [] if extrapolated else fill.judge(name, left)
                r["times"].append(seconds)
                r["rss"].append(res["peak_rss_kb"])
                r["wrong"] += [f"run {i + 1}: {w}" for w in wrong]
                keys = None if left["cache_keys"] is None else len(left["cache_keys"])
                r.update(left=len(left["sessions"]), keys_left=keys, rows_left=len(left["rows"]),
                         unrelated_missing=len(left["unrelated_missing"]),
                         unrelated_planted=left["unrelated_planted"], ok=not r["wrong"], output=res["output"])
                print(f"{name} run {i + 1}: {seconds:.3f} s, peak RSS {res['peak_rss_kb'] / 1024:.0f} MB, "
                      f"{len(left['sessions'])} sessions left, {keys} cache keys left, unrelated missing "
                      f"{left['unrelated_missing'] or 'none'} {'; '.join(wrong)} {res['output']}", file=sys.stderr)
            r["median"] = statistics.median(r["times"])
            r["rss_mb"] = max(r["rss"]) / 1024
        from django.db import connection

        connection.close()

    text = render(args, fill, results, info, command)
    print(text)
    if args.doc:
        write_doc(args.doc, args.section or args.backend, text)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": args.backend, "n": args.n, "counts": fill.counts,
                                               "versions": info, "results": results}, indent=2))
    bad = [n for n, r in results.items() if not r["ok"]]
    if bad:
        print(f"WRONG result (what is left) for: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
