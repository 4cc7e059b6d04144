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
    sessions only), then copied aside and written back in the same transaction (_PutBack), so no
    request ever sees them missing. A scheduled run (`before`) puts back the sessions that began
    after its instant too (began_after), read under the write lock.
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
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    spared = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if before is not None:
            # Take SQLite's write lock first, so no login lands between this read and the DELETE.
            cursor.execute(f"DELETE FROM {table} WHERE 0")
            kept_set = set(kept_found)
            spared = [row.pk for row in began_after(sessions, now, before, engine, counts)
                      if row.pk not in kept_set]
        put_back = _PutBack(connection, cursor, model, now, kept_found + spared)
        cursor.execute(f"DELETE FROM {table}")
        deleted = cursor.rowcount
        put_back.sessions()
        if owners.in_use():
            # The index keeps only the rows of the sessions left, emptied the same way.
            cursor.execute(f"DELETE FROM {owners.table_sql(connection)[0]}")
            put_back.owners()
        put_back.drop()
    counts.kept = put_back.rows - len(spared)
    deleted -= put_back.rows  # the kept and spared rows went back in
    counts.deleted_expired = min(counts.expired, deleted)
    counts.deleted_active = deleted - counts.deleted_expired
    with failing_says_what_was_done(counts):
        heartbeat()
    return counts


class _PutBack:
    """The live rows of `keys` (kept and spared sessions) and their index rows, copied aside inside
    the purge's transaction before the unqualified DELETEs and copied back after, in SQL: through
    the ORM, 10k rows and their index rows took 1.2 s to read and write back, against a 0.46 s floor
    at 200k (benchmarked, --keep-remembered). Copied under the write lock, a kept session goes back
    as it was at the DELETE, not as it was read earlier."""

    def __init__(self, connection, cursor, model, now, keys):
        self.cursor, self.rows, self.copied = cursor, 0, False
        quote = connection.ops.quote_name
        self.table = quote(model._meta.db_table)
        self.key = quote(model._meta.get_field("session_key").column)
        self.owner_table, self.owner_key = owners.table_sql(connection)
        if not keys:
            return
        expire = quote(model._meta.get_field("expire_date").column)
        cursor.execute("CREATE TEMP TABLE purge_keys (session_key text PRIMARY KEY)")
        cursor.executemany("INSERT OR IGNORE INTO purge_keys VALUES (%s)", [(key,) for key in keys])
        cursor.execute(f"CREATE TEMP TABLE purge_sessions AS SELECT * FROM {self.table} WHERE {self.key} IN "
                       f"(SELECT session_key FROM purge_keys) AND {expire} > %s",
                       [connection.ops.adapt_datetimefield_value(now)])
        cursor.execute(f"CREATE TEMP TABLE purge_owners AS SELECT * FROM {self.owner_table} "
                       f"WHERE {self.owner_key} IN (SELECT {self.key} FROM purge_sessions)")
        cursor.execute("SELECT count(*) FROM purge_sessions")
        self.rows = cursor.fetchone()[0]
        self.copied = True

    def sessions(self):
        if self.copied:
            self.cursor.execute(f"INSERT INTO {self.table} SELECT * FROM purge_sessions")

    def owners(self):
        if self.copied:
            self.cursor.execute(f"INSERT INTO {self.owner_table} SELECT * FROM purge_owners")

    def drop(self):
        if self.copied:
            for name in ("purge_keys", "purge_sessions", "purge_owners"):
                self.cursor.execute(f"DROP TABLE temp.{name}")


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
    # The counting scan reads the table in rowid order (NOT INDEXED: through the expire_date index each
    # row would be a random lookup, twice the time at 200k), asks the index once per row (a LEFT JOIN),
    # and counts the rows left to sort: with none (every login indexed), no page is read at all.
    owner_table, owner_key = owners.table_sql(connection)
    join = f" LEFT JOIN {owner_table} o ON o.{owner_key} = {table}.{key}" if keep.indexed else ""
    unknown = f"o.{owner_key} IS NULL AND " if keep.indexed else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FILTER (WHERE {unknown}{anonymous[0]}), "
                       f"count(*) FILTER (WHERE {unknown}{other_user[0]}), "
                       f"count(*) FILTER (WHERE NOT ({unknown}1)), "
                       f"count(*) FILTER (WHERE {unknown}NOT {anonymous[0]} AND NOT {other_user[0]}) "
                       f"FROM {table} NOT INDEXED{join} WHERE {expire} > %s",
                       [*anonymous[1], *other_user[1], *anonymous[1], *other_user[1], live_at])
        ruled_anonymous, ruled_other_user, indexed, to_sort = cursor.fetchone()
    counts.anonymous += ruled_anonymous
    counts.authenticated += ruled_other_user + indexed
    if not to_sort:
        return
    not_indexed = f" AND {owners.unknown_sql(connection, table, key)}" if keep.indexed else ""
    sql = (f"SELECT rowid, {key}, substr({data}, 1, {HEAD_CHARS}) FROM {table} WHERE rowid > %s AND {expire} > %s "
           f"AND NOT {anonymous[0]} AND NOT {other_user[0]}{not_indexed} ORDER BY rowid LIMIT {int(batch_size)}")
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [last, live_at, *anonymous[1], *other_user[1]])
            page = cursor.fetchall()
        if not page:
            return
        last = page[-1][0]
        yield [(row[1], row[2]) for row in page]


