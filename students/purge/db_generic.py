"""db and cached_db anywhere the table paths (db_postgres, db_sqlite) do not apply: dry runs,
cached_db on SQLite, other databases. Pages of rows in key order (keyset pagination), each page's
deletes in one short transaction; cached_db's cache entries of each page go right after its rows.

Floor: DELETE of every row (and for cached_db, UNLINK of every cache key). These pages read each
row's key and expire_date; the data is read and decoded only on a dry run or when someone is kept.

Counting without decoding: a row whose expire_date <= the run's start is expired (as Django's
loaders treat it), every other row is live.

A scheduled run (`before`): rows whose expire_date says they were last saved before it
(common.saved_since) go undecoded; only rows saved since are read whole and decoded, and spared
when their session began after `before` (began_after, also used by the table paths).
"""
from django.db import connections, router, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q
from django.utils import timezone

from students.models import SessionOwner
from students.purge import owners, redis_keys
from students.purge.common import CHUNK, Counts, failing_says_what_was_done, saved_since
from students.selection import Decoder


def purge(engine, keep, dry_run, batch_size, heartbeat, before):
    model, using = session_table(engine)
    if before is not None:
        return _purge_before(engine, keep, before, dry_run, batch_size, heartbeat)
    return _purge_pages(model, using, timezone.now(), engine, keep, dry_run, batch_size, heartbeat)


def session_table(engine):
    """The engine's session model and the database alias it is written to."""
    model = engine.store_class.get_model_class()
    return model, router.db_for_write(model)


def _purge_pages(model, using, now, engine, keep, dry_run, batch_size, heartbeat, where=None):
    """Pages of rows (those matching `where`) in key order; each page's deletes in one transaction."""
    counts = Counts()
    decode = dry_run or keep.keeps_anyone
    decoder = Decoder(engine.store_class)
    # The database says which rows have expired (expire_date <= now, as Django's loaders treat them):
    # parsing every row's timestamp in Python was a quarter of a per-user time zone run (profiled).
    expired_now = ExpressionWrapper(Q(expire_date__lte=now), output_field=BooleanField())
    fields = ("session_key", expired_now, "session_data") if decode else ("session_key", expired_now)
    # A keep rule asks the index about each page (owners.verdict); a zone run's pages are already
    # only the rows the index does not settle (_scoped_pages).
    ask_index = decode and keep.indexed and keep.only_user_ids is None
    with failing_says_what_was_done(counts):
        for rows in _scoped_pages(model, using, now, fields, batch_size, where, keep):
            expired, doomed = [], []
            owner_of = owners.known(row[0] for row in rows if not row[1]) if ask_index else {}
            for row in rows:
                if row[1]:
                    counts.expired += 1
                    expired.append(row[0])
                elif counts.remembered(row[0], keep, live_split=decode):
                    continue
                elif (verdict := owners.verdict(keep, row[0], owner_of.get(row[0]))) is not owners.Verdict.READ:
                    if not owners.tally(counts, keep, verdict, live_split=decode):
                        doomed.append(row[0])
                elif not (decode and counts.tally_data(decoder, row[2], keep, verify_all=dry_run)):
                    doomed.append(row[0])
            if not dry_run:
                _delete_page(model, using, engine, expired, doomed, counts)
            heartbeat()
        if keep.indexed and keep.only_user_ids is not None:
            for page in _due_pages(model, using, now, batch_size, where, keep):
                doomed = [key for key in page if not counts.remembered(key, keep, live_split=decode)]
                for _ in doomed:
                    owners.tally(counts, keep, owners.Verdict.DELETE, live_split=decode)
                if not dry_run:
                    _delete_page(model, using, engine, [], doomed, counts)
                heartbeat()
    return counts


def delete_sessions(engine, expired, doomed, counts):
    """Delete these keys (expired, and live ones) of a db/cached_db engine: rows, then cache entries."""
    _delete_page(*session_table(engine), engine, expired, doomed, counts)


def _delete_page(model, using, engine, expired, doomed, counts):
    with transaction.atomic(using=using):
        counts.deleted_expired += _delete_keys(model, using, expired)
        counts.deleted_active += _delete_keys(model, using, doomed)
        with connections[using].cursor() as cursor:  # their index rows, in the same transaction
            owners.forget_sql(cursor, connections[using], expired + doomed)
    forget_cached(engine, expired + doomed)


def forget_cached(engine, keys):
    """cached_db: remove these sessions' cache entries, after their rows are gone (a request in
    between finds neither, so it cannot put the row back in the cache)."""
    if engine.kind == "cached_db" and keys:
        prefix = engine.store_class.cache_key_prefix
        redis_keys.forget(redis_keys.session_cache(), [prefix + key for key in keys])


def _scoped_pages(model, using, now, fields, batch_size, where, keep):
    """The pages a run reads: every row (matching `where`); in a per-user time zone run with the
    index in use, only the rows the index does not know and the expired ones. Of the rest, those
    whose row names a due user go by key (_due_pages), the others are another zone's: kept unread."""
    if not (keep.indexed and keep.only_user_ids is not None):
        yield from _pages(model, using, fields, batch_size, where)
        return
    unknown = ~Exists(SessionOwner.objects.filter(session_key=OuterRef("session_key"))) | Q(expire_date__lte=now)
    yield from _pages(model, using, fields, batch_size, unknown if where is None else where & unknown)


def _due_pages(model, using, now, batch_size, where, keep):
    """A per-user time zone run with the index in use: the live keys (matching `where`) whose row
    names a due user (KeepRule.due_keys), batch_size at a time; nothing else is read."""
    due, page = sorted(keep.due_keys), []
    sessions = model._default_manager.using(using)
    for start in range(0, len(due), CHUNK):
        chunk = Q(session_key__in=due[start:start + CHUNK], expire_date__gt=now)  # expired: _scoped_pages
        page += sessions.filter(chunk if where is None else where & chunk).values_list("session_key", flat=True)
        if len(page) >= batch_size:
            yield page
            page = []
    if page:
        yield page


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


def began_after(sessions, now, before, engine, counts):
    """The live rows saved since `before` whose session began after it (anonymous ones included):
    what a scheduled run standing for `before` spares. Only these rows are read whole and decoded
    (signature checked); `counts.spared` counts them."""
    decoder, instant = Decoder(engine.store_class), before.timestamp()
    recent = sessions.filter(expire_date__gte=saved_since(before), expire_date__gt=now)
    scratch = Counts()  # the caller counts the live split its own way
    spared = [row for row in recent.iterator() if scratch.spares(decoder.decode(row.session_data), instant)]
    counts.spared += scratch.spared
    return spared


def _purge_before(engine, keep, before, dry_run, batch_size, heartbeat):
    """A scheduled run: delete expired sessions and those that began before `before`; spare the rest.

    Rows last saved before `before` (common.saved_since) go without decoding (when someone is kept,
    peeked for the user id, as a full purge does). Only rows saved since are read whole and
    decoded (signature checked) for their login time.
    """
    model, using = session_table(engine)
    now = timezone.now()
    before_ts = before.timestamp()
    old = Q(expire_date__lt=saved_since(before)) | Q(expire_date__lte=now)
    counts = _purge_pages(model, using, now, engine, keep, dry_run, batch_size, heartbeat, where=old)
    decoder = Decoder(engine.store_class)
    fields = ("session_key", "expire_date", "session_data")
    with failing_says_what_was_done(counts):
        for rows in _pages(model, using, fields, batch_size, where=~old):
            # A session the index keeps unread (a zone run: another zone's) needs no sparing: not decoded.
            owner_of = owners.known(row[0] for row in rows) if keep.indexed else {}
            doomed = []
            for key, _, data in rows:
                if counts.remembered(key, keep, live_split=True):
                    continue
                if owners.verdict(keep, key, owner_of.get(key)) is owners.Verdict.KEEP:
                    owners.tally(counts, keep, owners.Verdict.KEEP, live_split=True)
                    continue
                session = decoder.decode(data)
                if not counts.spares(session, before_ts) and not counts.tally(session, keep):
                    doomed.append(key)
            if not dry_run:
                _delete_page(model, using, engine, [], doomed, counts)
            heartbeat()
    if not (dry_run or keep.keeps_anyone):
        counts.decoded = False  # only the rows saved since were decoded: no live split to report
    return counts


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
