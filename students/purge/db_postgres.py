"""db and cached_db on PostgreSQL 14+, full purges and keep rules (not dry runs: db_generic):
DELETEs by physical block range (ctid), one short transaction each.

Floor: one `DELETE FROM django_session` (cached_db: one `DELETE ... RETURNING session_key` plus a
pipelined UNLINK of those keys' cache entries). A full purge is one counting scan plus the same
DELETE cut into block ranges; for cached_db each range's DELETE returns its keys, whose cache
entries go right after (db_generic.forget_cached: UNLINK on Django's RedisCache).

Counting without decoding: the counting scan takes the expired rows (expire_date <= the run's
start) and the total; every deleted row beyond the expired ones was live.

"Keep me signed in" sessions (purge.remembered): each DELETE also spares the checked ones, by an
anti-join on the remembered-login table; nothing else is read for them.

A scheduled run (`before`): only rows saved since `before` (common.saved_since) are read and
decoded, once, up front (db_generic.began_after); each DELETE spares those that began after it.
"""
import math

from django.db import connections
from django.utils import timezone

from students.purge import owners
from students.purge.common import Counts, array_items, failing_says_what_was_done, saved_since
from students.purge.db_generic import began_after, forget_cached, session_table
from students.purge.db_kept import kept_keys, not_kept_sql
from students.purge.remembered import sparing_sql
from students.selection import HEAD_CHARS


def purge(engine, keep, dry_run, batch_size, heartbeat, before):
    """PostgreSQL 14+: walk the table in physical block ranges, one short transaction each.

    A DELETE by key range touches rows scattered over the whole heap (session keys are random):
    measured here at 1M sessions it took 7x as long as one plain DELETE. A ctid (block) range is
    read sequentially by a TID Range Scan and measured as fast as the plain DELETE, while each
    transaction only locks batch_size rows. When someone is kept, each block range's DELETE spares
    the kept keys. To find them cheaply, the database rules out what it can (PayloadPatterns), a
    child process sorts the rest by the first HEAD_CHARS of their data (kept_keys), and only
    the sessions that claim a kept user are read whole and have their signature checked. With the
    ownership index in use the indexed sessions are settled up front (purge.owners), and only those
    without a row are read, in one pass before the first DELETE (_unindexed_heads).
    A session saved during the run may move to an already-walked block and survive the purge; the
    logout cutoff still ends it (students.cutoff). A kept user's login during the run can land in
    a range between its read and its DELETE and be logged out: the cost of not locking the table.
    A scheduled run (`before`) deletes only rows last saved before its instant, plus those saved
    since whose session began before it (began_after decides, once, up front): a login during
    the run is neither, so it survives.
    """
    assert not dry_run, "dry runs go through db_generic"
    model, using = session_table(engine)
    now = timezone.now()
    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    key, data, expire = (quote(model._meta.get_field(name).column)
                         for name in ("session_key", "session_data", "expire_date"))
    now_param = connection.ops.adapt_datetimefield_value(now)
    anonymous, other_user = not_kept_sql(connection, data, keep, engine)
    # With the index in use and someone kept, the indexed sessions are settled up front
    # (purge.owners): only the others are sorted; the indexed ones count as authenticated.
    sorting_indexed = keep.indexed and keep.keeps_anyone
    owner_table, owner_key = owners.table_sql(connection)
    join = f" LEFT JOIN {owner_table} o ON o.{owner_key} = {table}.{key}" if sorting_indexed else ""
    unknown = "o.{owner_key} IS NULL AND ".format(owner_key=owner_key) if sorting_indexed else ""
    with connection.cursor() as cursor:
        # One scan for the sizes and for the live sessions the database rules out (counted here,
        # as Decoder.peek counts the rest: from the payload, without the signature).
        # With the index in use, it also counts the sessions left to sort: with none, none is read.
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {expire} <= %s), "
            f"count(*) FILTER (WHERE {expire} > %s AND {unknown}{anonymous[0]}), "
            f"count(*) FILTER (WHERE {expire} > %s AND ({unknown}{other_user[0]} OR NOT ({unknown}true))), "
            f"count(*) FILTER (WHERE {expire} > %s AND {unknown}NOT {anonymous[0]} AND NOT {other_user[0]}), "
            f"pg_relation_size(%s::regclass) / current_setting('block_size')::int FROM {table}{join}",
            [now_param, now_param, *anonymous[1], now_param, *other_user[1],
             now_param, *anonymous[1], *other_user[1], table])
        total, expired, ruled_anonymous, ruled_other_user, to_sort, blocks = cursor.fetchone()
    counts = Counts(expired=expired, anonymous=ruled_anonymous, authenticated=ruled_other_user)
    index_follows = owners.in_use()
    step = max(1, math.ceil(blocks / (math.ceil(total / batch_size) or 1)))
    # The last range is open-ended: it takes rows appended since the size was read.
    ranges = [("ctid >= %s::tid AND ctid < %s::tid", [f"({start},0)", f"({start + step},0)"])
              for start in range(0, blocks, step)] + [("ctid >= %s::tid", [f"({blocks},0)"])]

    only_before, spared = ("", []), set()
    if before is not None:
        sessions = model._default_manager.using(using)
        spared = {row.pk for row in began_after(sessions, now, before, engine, counts)}
        began_before = [k for k in sessions.filter(expire_date__gte=saved_since(before), expire_date__gt=now)
                        .values_list("session_key", flat=True) if k not in spared]
        only_before = (f" AND ({expire} < %s OR {expire} <= %s OR {key} = ANY(%s::text[]))",
                       [connection.ops.adapt_datetimefield_value(saved_since(before)), now_param,
                        "{" + array_items(began_before) + "}"])

    returning = f" RETURNING {key}" if engine.kind == "cached_db" else ""
    remembered = sparing_sql(connection, table, key, keep)
    kept_seen = set(keep.indexed_kept)  # checked up front (purge.owners)
    indexed_kept = array_items(sorted(keep.indexed_kept))  # quoted once, sent with every range

    def delete(where, params, kept):
        kept_seen.update(kept)
        spared = ",".join(filter(None, [array_items(kept), indexed_kept]))
        spare = f" AND NOT ({key} = ANY(%s::text[]))" if spared else ""
        sql = f"DELETE FROM {table} WHERE {where}{only_before[0]}{spare}{remembered}"
        with connection.cursor() as cursor:  # autocommit: each DELETE is its own short transaction
            cursor.execute(sql + returning, [*params, *only_before[1], *(["{" + spared + "}"] if spared else [])])
            deleted = cursor.rowcount
            if returning:
                forget_cached(engine, [row[0] for row in cursor.fetchall()])
        # Split into expired/active at the end; a failure part-way reports the total so far.
        counts.deleted_active += deleted
        return deleted

    deleted = 0
    with failing_says_what_was_done(counts):
        if not keep.keeps_anyone:
            for where, params in ranges:
                deleted += delete(where, params, [])
                heartbeat()
        elif sorting_indexed:
            # The indexed sessions are settled (purge.owners): one pass up front reads the heads of the
            # live sessions without a row that the database cannot rule out (a hash anti-join, rather
            # than an index probe per row range by range), then the ranges are deleted sparing the kept.
            kept = []
            heads = _unindexed_heads(connection, table, key, data, expire, now_param, anonymous, other_user,
                                     batch_size) if to_sort else ()
            for _, found in kept_keys(model, using, now, engine, keep, counts, heads):
                kept += found
                heartbeat()
            for where, params in ranges:
                deleted += delete(where, params, kept)
                heartbeat()
        else:
            def heads_of(where, params):
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT {key}, left({data}, {HEAD_CHARS}) FROM {table} WHERE {where} "
                                   f"AND {expire} > %s AND NOT {anonymous[0]} AND NOT {other_user[0]}",
                                   [*params, now_param, *anonymous[1], *other_user[1]])
                    return cursor.fetchall()

            pages = (((where, params), heads_of(where, params)) for where, params in ranges)
            for (where, params), kept in kept_keys(model, using, now, engine, keep, counts, pages):
                deleted += delete(where, params, kept)
                heartbeat()
        if index_follows:
            # The rows of the sessions deleted above, in one statement after the last range: every row
            # of a login before the run but those of the sessions it left (kept, remembered, spared).
            # A row per range, each found by key, made the full purge 5.5x its floor at 200k; an
            # anti-join with the emptied table still read its dead rows. A login during the run keeps
            # its row; a run stopped part-way leaves rows that owners.sweep drops, and a row keeps nothing.
            owners.forget_all_but(kept_seen | keep.remembered | spared, now)
    counts.decoded = keep.keeps_anyone
    counts.kept = len(kept_seen | keep.remembered)
    counts.deleted_expired = min(counts.expired, deleted)
    counts.deleted_active = deleted - counts.deleted_expired
    return counts


def _unindexed_heads(connection, table, key, data, expire, now_param, anonymous, other_user, batch_size):
    """Pages of (None, [(session_key, head)]) of the live sessions with no index row that the database
    cannot rule out, from one query through a server-side cursor: memory holds one page at a time."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(f"SELECT {key}, left({data}, {HEAD_CHARS}) FROM {table} WHERE {expire} > %s "
                       f"AND NOT {anonymous[0]} AND NOT {other_user[0]} "
                       f"AND {owners.unknown_sql(connection, table, key)}",
                       [now_param, *anonymous[1], *other_user[1]])
        while page := cursor.fetchmany(batch_size):
            yield None, page
