"""The db engine on SQLite, full purges and keep rules (not dry runs: db_generic): one short
unqualified DELETE, kept and spared sessions put back in the same transaction.

Floor: `DELETE FROM django_session` (SQLite frees whole pages without visiting rows, its
"truncate optimization"). A full purge is that DELETE plus one count.

Counting without decoding: the expired count is the rows whose expire_date <= the run's start,
counted by the database before the DELETE; every other row deleted was live.

A scheduled run (`before`): the rows saved since `before` are read and decoded under the write
lock (db_generic.began_after), and those whose session began after it are put back.
"""
from django.db import connections, transaction
from django.utils import timezone

from students.models import SessionOwner
from students.purge import owners
from students.purge.common import Counts, failing_says_what_was_done
from students.purge.db_generic import began_after, session_table
from students.purge.db_kept import kept_keys, not_kept_sql
from students.selection import HEAD_CHARS


def purge(engine, keep, dry_run, batch_size, heartbeat, before):
    """SQLite: empty the table with one unqualified DELETE, then put the kept sessions back.

    Measured here (200k sessions): SQLite deletes row by row at ~1/7 the speed of an unqualified
    DELETE, which frees whole pages (its "truncate optimization"). Batches would hold the single
    SQLite write lock for longer in total, so one short transaction is the gentler choice. Kept
    sessions are found first (kept_keys: pages in rowid order; memory grows with the kept
    sessions only), then re-read, and written back in the same transaction, so no request ever
    sees them missing. A scheduled run (`before`) puts back the sessions that began after its
    instant too (began_after), read under the write lock.
    """
    assert not dry_run, "dry runs go through db_generic"
    model, using = session_table(engine)
    now = timezone.now()
    sessions = model._default_manager.using(using)
    counts = Counts(expired=sessions.filter(expire_date__lte=now).count())
    kept_found = []
    if keep.keeps_anyone:
        pages = (((), page) for page in _rowid_heads(model, using, now, batch_size, keep, engine, counts))
        for _, kept in kept_keys(model, using, now, engine, keep, counts, pages):
            kept_found += kept
            heartbeat()
    kept_found += sorted(keep.remembered.difference(kept_found))  # checked up front (purge.remembered)
    kept_found += sorted(keep.indexed_kept.difference(kept_found))  # checked up front (purge.owners)
    kept_rows = []
    for start in range(0, len(kept_found), 500):
        kept_rows += sessions.filter(session_key__in=kept_found[start:start + 500], expire_date__gt=now)
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    spared_rows = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if before is not None:
            # Take SQLite's write lock first, so no login lands between this read and the DELETE.
            cursor.execute(f"DELETE FROM {table} WHERE 0")
            kept_set = {row.pk for row in kept_rows}
            spared_rows = [row for row in began_after(sessions, now, before, engine, counts)
                           if row.pk not in kept_set]
        cursor.execute(f"DELETE FROM {table}")
        deleted = cursor.rowcount
        sessions.bulk_create(kept_rows + spared_rows, batch_size=500)
        _index_follows([row.pk for row in kept_rows + spared_rows], connection, cursor)
    counts.kept = len(kept_rows)
    deleted -= counts.kept + len(spared_rows)  # the kept and spared rows went back in
    counts.deleted_expired = min(counts.expired, deleted)
    counts.deleted_active = deleted - counts.deleted_expired
    with failing_says_what_was_done(counts):
        heartbeat()
    return counts


def _index_follows(left, connection, cursor):
    """The index keeps only the rows of the sessions `left` (kept and spared), in the purge's
    transaction: emptied the same way as the session table (one unqualified DELETE), then those
    rows put back."""
    if not owners.in_use():
        return
    rows = []
    for start in range(0, len(left), owners.CHUNK):
        rows += SessionOwner.objects.filter(session_key__in=left[start:start + owners.CHUNK])
    cursor.execute(f"DELETE FROM {owners.table_sql(connection)[0]}")
    SessionOwner.objects.bulk_create(rows, batch_size=500)


def _rowid_heads(model, using, live_at, batch_size, keep, engine, counts):
    """SQLite: pages of (session_key, head) of the sessions live at `live_at` that the database
    cannot rule out (not_kept_sql; those it can are counted into `counts`), in rowid order.

    Session keys are random, so key-ordered pages are batch_size random lookups through the key
    index; rowid order reads the table sequentially (measured: a 200k --keep-staff run 30 s -> 23 s)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    key, data, expire = (quote(model._meta.get_field(name).column)
                         for name in ("session_key", "session_data", "expire_date"))
    table = quote(model._meta.db_table)
    anonymous, other_user = not_kept_sql(connection, data, keep, engine)
    live_at = connection.ops.adapt_datetimefield_value(live_at)
    # With the index in use, its sessions are settled up front (purge.owners): only the others are
    # sorted here; the indexed ones count as authenticated (a row is written at login).
    unknown = f"{owners.unknown_sql(connection, table, key)} AND " if keep.indexed else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FILTER (WHERE {unknown}{anonymous[0]}), "
                       f"count(*) FILTER (WHERE {unknown}{other_user[0]}), "
                       f"count(*) FILTER (WHERE NOT ({unknown}1)) "
                       f"FROM {table} WHERE {expire} > %s", [*anonymous[1], *other_user[1], live_at])
        ruled_anonymous, ruled_other_user, indexed = cursor.fetchone()
    counts.anonymous += ruled_anonymous
    counts.authenticated += ruled_other_user + indexed
    sql = (f"SELECT rowid, {key}, substr({data}, 1, {HEAD_CHARS}) FROM {table} WHERE rowid > %s AND {expire} > %s "
           f"AND {unknown}NOT {anonymous[0]} AND NOT {other_user[0]} ORDER BY rowid LIMIT {int(batch_size)}")
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [last, live_at, *anonymous[1], *other_user[1]])
            page = cursor.fetchall()
        if not page:
            return
        last = page[-1][0]
        yield [(row[1], row[2]) for row in page]


