"""How each session engine is purged. Streams sessions in batches; never loads them all.

db         PostgreSQL 14+: batched DELETEs by physical block range (a handful of big statements for
           a full purge; see _purge_postgres_table). SQLite: one short unqualified DELETE, kept
           sessions put back in the same transaction (see _purge_sqlite_table). Elsewhere, and for
           dry runs: pages of rows in key order, doomed keys deleted per page.
cached_db  the same rows, AND their cache entries (otherwise users stay logged in from the cache).
file       the session files under SESSION_FILE_PATH that carry the cookie-name prefix.
cache      only where the cache can list its keys: Django's RedisCache (SCAN); else UnsupportedEngine.
signed_cookies  nothing is stored on the server; the logout cutoff (students.cutoff) ends them.

A scheduled run (`before`: the instant it stands for) deletes only sessions that began before it,
plus expired ones: on db/cached_db rows last saved before it go undecoded (_purge_db_before), on
file and cache the login time each session carries decides.

Each batch is its own transaction, so no single long lock blocks logins for the whole run (on
SQLite the one DELETE frees pages without visiting rows, so its lock is shorter than batches' sum).
Expired sessions count as expired when their expire_date <= the run's start, as Django's loaders do.
"""
import logging
import math
import multiprocessing
import os
import string
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from itertools import islice

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.cache.backends.base import default_key_func
from django.core.cache.backends.redis import RedisCache
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from students.engines import UnsupportedEngine
from students.selection import HEAD_CHARS, Decoder, PayloadPatterns, began_before, triage, user_id_of

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000
_KEY_CHARS = frozenset(string.ascii_lowercase + string.digits)


@dataclass
class Counts:
    """What a purge saw and did. The live split (authenticated/anonymous/undecodable) is only
    known when sessions were decoded: on a dry run, or when someone is kept."""

    authenticated: int = 0
    anonymous: int = 0
    undecodable: int = 0
    expired: int = 0
    kept: int = 0
    deleted_active: int = 0
    deleted_expired: int = 0
    spared: int = 0  # live, but began after the scheduled instant the run stands for
    decoded: bool = False
    note: str = ""

    def tally_data(self, decoder, data, keep, verify_all=False):
        """Decode and count one live session's stored data; True when the rule keeps it.

        Only sessions that would be kept pay for the signature check, unless verify_all (dry runs,
        so their undecodable count is exact)."""
        if verify_all:
            return self.tally(decoder.decode(data), keep)
        session = decoder.peek(data)
        user_id = user_id_of(session)
        if keep.keeps(user_id):  # claims a kept user: believe it only if the signature holds
            return self.tally(decoder.decode(data), keep)
        # Not kept whatever the signature says: count it as peeked (this runs per row, so inline).
        self.decoded = True
        if session is None:
            self.undecodable += 1
        elif user_id is None:
            self.anonymous += 1
        else:
            self.authenticated += 1
        return False

    def tally(self, session, keep):
        """Count one live, decoded session (None = undecodable); True when the rule keeps it."""
        self.decoded = True
        if session is None:
            self.undecodable += 1  # never kept: we cannot tell whose it is
            return False
        user_id = user_id_of(session)
        if user_id is None:
            self.anonymous += 1
            return False
        self.authenticated += 1
        if keep.keeps(user_id):
            self.kept += 1
            return True
        return False

    def spares(self, session, before):
        """For a scheduled run: True (and counted) when this live, decoded session did not begin
        before epoch `before` (selection.began_before), so the run leaves it alone."""
        if before is None or session is None or began_before(session, before):
            return False
        self.decoded = True
        self.spared += 1
        if user_id_of(session) is None:
            self.anonymous += 1
        else:
            self.authenticated += 1
        return True

    def as_dict(self):
        return asdict(self)


def _noop():
    pass


def check_purgeable(engine):
    """Raise UnsupportedEngine before anything is changed, when this engine cannot be purged."""
    if engine.kind == "cache":
        _redis_cache_for(engine)


def purge(engine, keep, *, dry_run=False, batch_size=DEFAULT_BATCH_SIZE, heartbeat=_noop, before=None):
    """Delete (or on dry_run only count) every session the KeepRule does not keep, plus expired ones.
    With `before` (aware datetime: the scheduled instant a run stands for), only sessions that
    began before it; those that began after are spared (counts.spared).

    heartbeat() is called after every batch (the lock renews its lease there)."""
    check_purgeable(engine)
    before_ts = before.timestamp() if before is not None else None
    if engine.kind in ("db", "cached_db"):
        return _purge_db(engine, keep, dry_run, batch_size, heartbeat, before)
    if engine.kind == "file":
        return _purge_files(engine, keep, dry_run, batch_size, heartbeat, before_ts)
    if engine.kind == "cache":
        return _purge_cache(engine, keep, dry_run, batch_size, heartbeat, before_ts)
    return Counts(note="signed_cookies keeps sessions in the browser, so there is nothing to delete on "
                       "the server; the logout cutoff ends them at their next request")


# --- db and cached_db ---------------------------------------------------------------------------

def _purge_db(engine, keep, dry_run, batch_size, heartbeat, before=None):
    model = engine.store_class.get_model_class()
    using = router.db_for_write(model)
    now = timezone.now()
    if engine.kind == "db" and not dry_run:
        connection = connections[using]
        if connection.vendor == "sqlite":
            return _purge_sqlite_table(model, using, now, engine, keep, batch_size, heartbeat, before)
        if connection.vendor == "postgresql" and connection.pg_version >= 140000:  # TID range scans
            return _purge_postgres_table(model, using, now, engine, keep, batch_size, heartbeat, before)
    if before is not None:
        return _purge_db_before(engine, keep, before, dry_run, batch_size, heartbeat)
    return _purge_pages(model, using, now, engine, keep, dry_run, batch_size, heartbeat)


def _purge_pages(model, using, now, engine, keep, dry_run, batch_size, heartbeat, where=None):
    """Pages of rows (those matching `where`) in key order; each page's deletes in one transaction."""
    counts = Counts()
    decode = dry_run or keep.keeps_anyone
    decoder = Decoder(engine.store_class)
    session_cache = _session_cache(engine)
    fields = ("session_key", "expire_date", "session_data") if decode else ("session_key", "expire_date")
    for rows in _pages(model, using, fields, batch_size, where):
        expired, doomed = [], []
        for row in rows:
            if row[1] <= now:  # Django's own loaders treat expire_date <= now as gone
                counts.expired += 1
                expired.append(row[0])
            elif not (decode and counts.tally_data(decoder, row[2], keep, verify_all=dry_run)):
                doomed.append(row[0])
        if not dry_run:
            _delete_page(model, using, engine, session_cache, expired, doomed, counts)
        heartbeat()
    return counts


def _session_cache(engine):
    return caches[settings.SESSION_CACHE_ALIAS] if engine.kind == "cached_db" else None


def delete_sessions(engine, expired, doomed, counts):
    """Delete these keys (expired, and live ones) of a db/cached_db engine: rows, then cache entries."""
    model = engine.store_class.get_model_class()
    _delete_page(model, router.db_for_write(model), engine, _session_cache(engine), expired, doomed, counts)


def _delete_page(model, using, engine, session_cache, expired, doomed, counts):
    with transaction.atomic(using=using):
        counts.deleted_expired += _delete_keys(model, using, expired)
        counts.deleted_active += _delete_keys(model, using, doomed)
    if session_cache is not None:
        # After the rows: a request in between finds neither and cannot re-cache the row.
        prefix = engine.store_class.cache_key_prefix
        session_cache.delete_many([prefix + key for key in expired + doomed])


def _saved_since(before):
    """A row whose expire_date is at or after this was last saved at or after `before`
    (see _purge_db_before); one before it was saved, hence began, before `before`. This holds
    while expire_date = save time + SESSION_COOKIE_AGE: a set_expiry shorter than the cookie age,
    or an age raised while sessions were stored, would make rows look older than they are."""
    return before + timedelta(seconds=settings.SESSION_COOKIE_AGE)


def _began_after(sessions, now, before, engine, counts):
    """The live rows saved since `before` whose session began after it (anonymous ones included):
    what a scheduled run standing for `before` spares. Only these rows are read whole and decoded
    (signature checked); `counts.spared` counts them."""
    decoder, instant = Decoder(engine.store_class), before.timestamp()
    recent = sessions.filter(expire_date__gte=_saved_since(before), expire_date__gt=now)
    scratch = Counts()  # the caller counts the live split its own way
    spared = [row for row in recent.iterator() if scratch.spares(decoder.decode(row.session_data), instant)]
    counts.spared += scratch.spared
    return spared


def _purge_db_before(engine, keep, before, dry_run, batch_size, heartbeat):
    """A scheduled run on db/cached_db where the table paths do not apply (cached_db, dry runs,
    other databases): delete expired sessions and those that began before `before`; spare the
    rest.

    Django saves a row with expire_date = save time + SESSION_COOKIE_AGE (this site never calls
    set_expiry), and a session is never saved before it began. So a row whose expire_date is
    before `before` + SESSION_COOKIE_AGE was last saved, hence began, before `before`: those go
    without decoding (when someone is kept, peeked for the user id, as a full purge does). Only rows saved
    since are read whole and decoded (signature checked) for their login time. Pages in key order,
    each page's deletes in one short transaction, as _purge_db.
    """
    model = engine.store_class.get_model_class()
    using = router.db_for_write(model)
    now = timezone.now()
    before_ts = before.timestamp()
    old = Q(expire_date__lt=_saved_since(before)) | Q(expire_date__lte=now)
    counts = _purge_pages(model, using, now, engine, keep, dry_run, batch_size, heartbeat, where=old)
    decoder, session_cache = Decoder(engine.store_class), _session_cache(engine)
    fields = ("session_key", "expire_date", "session_data")
    for rows in _pages(model, using, fields, batch_size, where=~old):
        doomed = []
        for key, _, data in rows:
            session = decoder.decode(data)
            if not counts.spares(session, before_ts) and not counts.tally(session, keep):
                doomed.append(key)
        if not dry_run:
            _delete_page(model, using, engine, session_cache, [], doomed, counts)
        heartbeat()
    if not (dry_run or keep.keeps_anyone):
        counts.decoded = False  # only the rows saved since were decoded: no live split to report
    return counts


def _purge_sqlite_table(model, using, now, engine, keep, batch_size, heartbeat, before=None):
    """SQLite: empty the table with one unqualified DELETE, then put the kept sessions back.

    Measured here (200k sessions): SQLite deletes row by row at ~1/7 the speed of an unqualified
    DELETE, which frees whole pages (its "truncate optimization"). Batches would hold the single
    SQLite write lock for longer in total, so one short transaction is the gentler choice. Kept
    sessions are found first (_kept_keys: pages in rowid order; memory grows with the kept
    sessions only), then re-read, and written back in the same transaction, so no request ever
    sees them missing. A scheduled run (`before`) puts back the sessions that began after its
    instant too (_began_after), read under the write lock.
    """
    sessions = model._default_manager.using(using)
    counts = Counts(expired=sessions.filter(expire_date__lte=now).count())
    kept_keys = []
    if keep.keeps_anyone:
        pages = (((), page) for page in _rowid_heads(model, using, now, batch_size, keep, engine, counts))
        for _, kept in _kept_keys(model, using, now, engine, keep, counts, pages):
            kept_keys += kept
            heartbeat()
    kept_rows = []
    for start in range(0, len(kept_keys), 500):
        kept_rows += sessions.filter(session_key__in=kept_keys[start:start + 500], expire_date__gt=now)
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    spared_rows = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if before is not None:
            # Take SQLite's write lock first, so no login lands between this read and the DELETE.
            cursor.execute(f"DELETE FROM {table} WHERE 0")
            kept_set = {row.pk for row in kept_rows}
            spared_rows = [row for row in _began_after(sessions, now, before, engine, counts)
                           if row.pk not in kept_set]
        cursor.execute(f"DELETE FROM {table}")
        deleted = cursor.rowcount
        sessions.bulk_create(kept_rows + spared_rows, batch_size=500)
    heartbeat()
    counts.kept = len(kept_rows)
    deleted -= counts.kept + len(spared_rows)  # the kept and spared rows went back in
    counts.deleted_expired = min(counts.expired, deleted)
    counts.deleted_active = deleted - counts.deleted_expired
    return counts


def _pages(model, using, fields, batch_size, where=None):
    """Rows in primary-key order, batch_size at a time (keyset pagination: no OFFSET, no big list)."""
    rows = model._default_manager.using(using).order_by("session_key").values_list(*fields)
    if where is not None:
        rows = rows.filter(where)
    last = ""
    while True:
        page = list(rows.filter(session_key__gt=last)[:batch_size])
        if not page:
            return
        yield page
        last = page[-1][0]


def _rowid_heads(model, using, live_at, batch_size, keep, engine, counts):
    """SQLite: pages of (session_key, head) of the sessions live at `live_at` that the database
    cannot rule out (_not_kept_sql; those it can are counted into `counts`), in rowid order.

    Session keys are random, so key-ordered pages are batch_size random lookups through the key
    index; rowid order reads the table sequentially (measured: a 200k --keep-staff run 30 s -> 23 s)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    key, data, expire = (quote(model._meta.get_field(name).column)
                         for name in ("session_key", "session_data", "expire_date"))
    table = quote(model._meta.db_table)
    anonymous, other_user = _not_kept_sql(connection, data, keep, engine)
    live_at = connection.ops.adapt_datetimefield_value(live_at)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FILTER (WHERE {anonymous[0]}), count(*) FILTER (WHERE {other_user[0]}) "
                       f"FROM {table} WHERE {expire} > %s", [*anonymous[1], *other_user[1], live_at])
        ruled_anonymous, ruled_other_user = cursor.fetchone()
    counts.anonymous += ruled_anonymous
    counts.authenticated += ruled_other_user
    sql = (f"SELECT rowid, {key}, substr({data}, 1, {HEAD_CHARS}) FROM {table} WHERE rowid > %s AND {expire} > %s "
           f"AND NOT {anonymous[0]} AND NOT {other_user[0]} ORDER BY rowid LIMIT {int(batch_size)}")
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [last, live_at, *anonymous[1], *other_user[1]])
            page = cursor.fetchall()
        if not page:
            return
        last = page[-1][0]
        yield [(row[1], row[2]) for row in page]


def _not_kept_sql(connection, data, keep, engine):
    """Two SQL conditions (with params) on the data column, for live sessions that are certainly
    not kept: (anonymous: uncompressed, never names a user; other user: leads with an id no kept
    head matches). Plain string tests: no row can make them fail. Both false when nobody is kept
    or sessions are not JSON (PayloadPatterns). SQLite gets only the first: the kept heads could
    pass its limit on query parameters, and the triage sorts those sessions anyway."""
    patterns = PayloadPatterns.for_rule(keep, Decoder(engine.store_class)) if keep.keeps_anyone else None
    if patterns is None:
        return ("false", []), ("false", [])
    find = "strpos" if connection.vendor == "postgresql" else "instr"
    anonymous = (f"(substr({data}, 1, 1) <> '.' AND "
                 + " AND ".join([f"{find}({data}, %s) = 0"] * len(patterns.user_key)) + ")",
                 list(patterns.user_key))
    if connection.vendor != "postgresql":
        return anonymous, ("false", [])
    heads = [f"left({data}, {int(n)}) = ANY(%s)" for n, _ in patterns.kept_heads]
    other_user = (f"(starts_with({data}, %s)" + "".join(f" AND NOT {h}" for h in heads) + ")",
                  [patterns.leading_user, *(list(group) for _, group in patterns.kept_heads)])
    return anonymous, other_user


def _kept_keys(model, using, now, engine, keep, counts, pages):
    """For each (tag, heads) page, yield (tag, keys of the kept sessions among them), tallying the
    rest into `counts`. A forked process sorts one page's heads (selection.triage) while this
    one reads the next page and the caller deletes the previous (a thread measured no faster:
    it fights this process for the GIL; the child never touches the connection). Sessions the
    heads do not settle, and those claiming a kept user, are read whole and decoded here."""
    decoder = Decoder(engine.store_class)
    sessions = model._default_manager.using(using)

    def settle(tag, future):
        others, unsettled = future.result()
        counts.authenticated += others
        kept = []
        for start in range(0, len(unsettled), 500):
            rows = sessions.filter(session_key__in=unsettled[start:start + 500], expire_date__gt=now)
            kept += [key for key, data in rows.values_list("session_key", "session_data")
                     if counts.tally_data(decoder, data, keep)]
        return tag, kept

    with _sorter() as sorting:
        pending = None
        for tag, heads in pages:  # reading the next page overlaps the sorting of this one
            future = sorting.submit(triage, keep, heads)
            if pending:
                yield settle(*pending)
            pending = tag, future
        if pending:
            yield settle(*pending)


def _sorter():
    """One forked process to sort heads in; this process itself where the host cannot give one
    (no working /dev/shm for multiprocessing's semaphores, as in some containers): slower, still right."""
    try:
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    except (OSError, ImportError, NotImplementedError) as exc:
        logger.warning("Sorting sessions in this process: no worker process available (%s)", exc)
        return _InThisProcess()


class _InThisProcess:
    """The part of an executor _kept_keys uses, running each call at once, here."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def submit(self, function, *args):
        future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _delete_keys(model, using, keys):
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field("session_key").column)
    chunk = min(connection.features.max_query_params or 5000, 5000)
    deleted = 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and keys:
            # One array parameter: psycopg splits a 5,000-placeholder query slowly (profiled).
            cursor.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", [list(keys)])
            return cursor.rowcount
        for start in range(0, len(keys), chunk):
            part = keys[start:start + chunk]
            cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(part))})", part)
            deleted += cursor.rowcount
    return deleted


def _purge_postgres_table(model, using, now, engine, keep, batch_size, heartbeat, before=None):
    """PostgreSQL 14+: walk the table in physical block ranges, one short transaction each.

    A DELETE by key range touches rows scattered over the whole heap (session keys are random):
    measured here at 1M sessions it took 7x as long as one plain DELETE. A ctid (block) range is
    read sequentially by a TID Range Scan and measured as fast as the plain DELETE, while each
    transaction only locks batch_size rows. When someone is kept, each block range's DELETE spares
    the kept keys. To find them cheaply, the database rules out what it can (PayloadPatterns), a
    child process sorts the rest by the first HEAD_CHARS of their data (_kept_keys), and only
    the sessions that claim a kept user are read whole and have their signature checked.
    A session saved during the run may move to an already-walked block and survive the purge; the
    logout cutoff still ends it (students.cutoff). A kept user's login during the run can land in
    a range between its read and its DELETE and be logged out: the cost of not locking the table.
    A scheduled run (`before`) deletes only rows last saved before its instant, plus those saved
    since whose session began before it (_began_after decides, once, up front): a login during
    the run is neither, so it survives.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    key, data, expire = (quote(model._meta.get_field(name).column)
                         for name in ("session_key", "session_data", "expire_date"))
    now_param = connection.ops.adapt_datetimefield_value(now)
    anonymous, other_user = _not_kept_sql(connection, data, keep, engine)
    with connection.cursor() as cursor:
        # One scan for the sizes and for the live sessions the database rules out (counted here,
        # as Decoder.peek counts the rest: from the payload, without the signature).
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {expire} <= %s), "
            f"count(*) FILTER (WHERE {expire} > %s AND {anonymous[0]}), "
            f"count(*) FILTER (WHERE {expire} > %s AND {other_user[0]}), "
            f"pg_relation_size(%s::regclass) / current_setting('block_size')::int FROM {table}",
            [now_param, now_param, *anonymous[1], now_param, *other_user[1], table])
        total, expired, ruled_anonymous, ruled_other_user, blocks = cursor.fetchone()
    counts = Counts(expired=expired, anonymous=ruled_anonymous, authenticated=ruled_other_user)
    step = max(1, math.ceil(blocks / (math.ceil(total / batch_size) or 1)))
    # The last range is open-ended: it takes rows appended since the size was read.
    ranges = [("ctid >= %s::tid AND ctid < %s::tid", [f"({start},0)", f"({start + step},0)"])
              for start in range(0, blocks, step)] + [("ctid >= %s::tid", [f"({blocks},0)"])]

    only_before = ("", [])
    if before is not None:
        sessions = model._default_manager.using(using)
        spared = {row.pk for row in _began_after(sessions, now, before, engine, counts)}
        began_before = [k for k in sessions.filter(expire_date__gte=_saved_since(before), expire_date__gt=now)
                        .values_list("session_key", flat=True) if k not in spared]
        only_before = (f" AND ({expire} < %s OR {expire} <= %s OR {key} = ANY(%s))",
                       [connection.ops.adapt_datetimefield_value(_saved_since(before)), now_param, began_before])

    def delete(where, params, kept):
        spare = f" AND NOT ({key} = ANY(%s))" if kept else ""
        with connection.cursor() as cursor:  # autocommit: each DELETE is its own short transaction
            cursor.execute(f"DELETE FROM {table} WHERE {where}{only_before[0]}{spare}",
                           [*params, *only_before[1], *([kept] if kept else [])])
            return cursor.rowcount

    deleted = 0
    if not keep.keeps_anyone:
        for where, params in ranges:
            deleted += delete(where, params, [])
            heartbeat()
    else:
        def heads_of(where, params):
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {key}, left({data}, {HEAD_CHARS}) FROM {table} WHERE {where} "
                               f"AND {expire} > %s AND NOT {anonymous[0]} AND NOT {other_user[0]}",
                               [*params, now_param, *anonymous[1], *other_user[1]])
                return cursor.fetchall()

        pages = (((where, params), heads_of(where, params)) for where, params in ranges)
        for (where, params), kept in _kept_keys(model, using, now, engine, keep, counts, pages):
            deleted += delete(where, params, kept)
            heartbeat()
    counts.decoded = keep.keeps_anyone
    counts.deleted_expired = min(counts.expired, deleted)
    counts.deleted_active = deleted - counts.deleted_expired
    return counts


# --- file ---------------------------------------------------------------------------------------

def _purge_files(engine, keep, dry_run, batch_size, heartbeat, before=None):
    store_class = engine.store_class
    # From the setting, not store_class._get_storage_path(): that one caches the first answer.
    folder = settings.SESSION_FILE_PATH or tempfile.gettempdir()
    if not os.path.isdir(folder):
        raise ImproperlyConfigured(f"SESSION_FILE_PATH {folder!r} is not an existing folder")
    prefix = settings.SESSION_COOKIE_NAME
    decoder = Decoder(store_class)
    probe = store_class()  # only for get_expiry_age(), which reads no file when given expiry=
    cookie_age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    counts = Counts()
    with os.scandir(folder) as entries:
        for seen, entry in enumerate(entries, 1):
            key = entry.name[len(prefix):]
            # Django's own temp files (<prefix><key>_out_...) and foreign files do not pass this.
            if not entry.name.startswith(prefix) or len(key) < 8 or not set(key) <= _KEY_CHARS:
                continue
            try:
                with open(entry.path, encoding="ascii") as handle:
                    data = handle.read()
                modified = datetime.fromtimestamp(entry.stat().st_mtime, tz=dt_timezone.utc)
            except FileNotFoundError:
                continue  # removed meanwhile (logout, clearsessions)
            except (OSError, UnicodeDecodeError):
                data, modified = "\0", timezone.now()  # unreadable counts as undecodable
            session = decoder.decode(data) if data else {}
            expiry = (session or {}).get("_session_expiry") or modified + cookie_age
            if probe.get_expiry_age(expiry=expiry) <= 0:
                counts.expired += 1
                if not dry_run and _unlink(entry.path):
                    counts.deleted_expired += 1
            elif counts.spares(session, before):
                pass
            elif not counts.tally(session, keep) and not dry_run and _unlink(entry.path):
                counts.deleted_active += 1
            if seen % batch_size == 0:
                heartbeat()
    heartbeat()
    return counts


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# --- cache --------------------------------------------------------------------------------------

def _redis_cache_for(engine):
    alias = settings.SESSION_CACHE_ALIAS
    session_cache = caches[alias]
    backend = f"{type(session_cache).__module__}.{type(session_cache).__qualname__}"
    if not isinstance(session_cache, RedisCache):
        raise UnsupportedEngine(
            f"session engine {engine.path!r} keeps sessions in cache {alias!r} ({backend}), which cannot "
            "list its keys, so they cannot be purged; use Django's RedisCache or the db/cached_db engine"
        )
    if session_cache.key_func is not default_key_func:
        raise UnsupportedEngine(f"cache {alias!r} uses a custom KEY_FUNCTION; its session keys cannot be found")
    return session_cache


def _glob_escape(text):
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _purge_cache(engine, keep, dry_run, batch_size, heartbeat, before=None):
    session_cache = _redis_cache_for(engine)
    head = session_cache.make_key("")  # "<KEY_PREFIX>:<VERSION>:" with Django's default key function
    pattern = _glob_escape(head + engine.store_class.cache_key_prefix) + "*"
    # Django's RedisCache exposes no key listing; its client (redis-py) does. Write pool = primary.
    client = session_cache._cache.get_client(write=True)
    keys = (raw.decode() if isinstance(raw, bytes) else raw for raw in client.scan_iter(match=pattern, count=1000))
    counts = Counts()
    while batch := [key[len(head):] for key in islice(keys, batch_size)]:
        values = session_cache.get_many(batch)  # a key gone meanwhile has expired or logged out
        sessions = {key: value if isinstance(value, dict) else None for key, value in values.items()}
        doomed = [key for key, session in sessions.items()
                  if not counts.spares(session, before) and not counts.tally(session, keep)]
        if not dry_run and doomed:
            session_cache.delete_many(doomed)
            counts.deleted_active += len(doomed)
        heartbeat()
    counts.decoded = True
    return counts
