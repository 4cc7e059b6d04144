"""The ownership index (students.models.SessionOwner) as the purge reads it: which sessions to look
at, never a reason to keep one.

Before a purge, indexed() asks the index once:
- a keep rule (--keep-staff, --exclude-user): the rows naming a kept user point at the only indexed
  sessions that may survive. Each is read from the store and decoded (signature checked where the
  store signs); it is kept only when its own data names a kept user (KeepRule.indexed_kept). Every
  other session that has a row goes unread: a row names who logged in, so a row naming someone not
  kept means a session of someone not kept (and a forged or stale row at worst logs out early).
- a per-user time zone run (KeepRule.only_user_ids): the sessions whose row names a due user go by
  key, unread (KeepRule.due_keys), except a kept due user's, checked as above; those whose row names a user of another zone are kept unread, as
  such a run keeps another zone's session unverified today (KeepRule.keeps_unread). Here a wrong
  row can keep a session in the store until it expires (checking every kept session would cost what
  the index saves), but not in use: the clock cutoff (students.clock) ends it at its next request by
  the zone and login time in its own data.
- a session with no row (from before the index, an anonymous visitor, a login that bypassed it) is
  decided exactly as before the index: read and decoded.

Rows follow the sessions: each engine deletes the rows of the sessions it deletes, in the same
transaction where the store is the database (forget_sql, forget), or, where a run leaves few
sessions (a full purge or a keep rule on db_postgres, cache and file), in one pass after the last
batch (forget_all_but: every row of a login before the run's start but those of the sessions left;
cache and file through RowsInStep). Rows whose session Django's own expiry removed (clearsessions,
a Redis TTL, the file engine's cleanup) go by sweep(): a session cannot expire by itself before
login + SESSION_COOKIE_AGE (its expiry is its last save + that age), so each real run checks only
the rows whose login is older than that, against the store, and drops those whose session is gone.
A row outlives its session by at most that age plus one run.
"""
import os
from dataclasses import replace
from datetime import timedelta
from enum import Enum

from django.conf import settings
from django.db import connections, router, transaction
from django.utils import timezone

from students.models import SessionOwner
from students.purge.common import CHUNK, array_items
from students.selection import user_id_of


class Verdict(Enum):
    KEEP = "keep"      # kept unread (a checked kept row; another zone's row in a zone run)
    DELETE = "delete"  # deleted unread (a row naming a user the rule does not keep, or a due one)
    READ = "read"      # no row, or a row that must be checked: decide from the session, as before


def in_use():
    """Does the index hold any row? When empty, every purge runs exactly as before the index."""
    return SessionOwner.objects.exists()


def indexed(engine, keep, dry_run):
    """`keep` with what the index says filled in (KeepRule.indexed, indexed_kept, due_keys)."""
    if engine.kind == "signed_cookies" or not in_use():
        return keep
    keep = replace(keep, indexed=True)
    if keep.only_user_ids is not None:
        # A due user the rule also keeps (staff with --keep-staff, --exclude-user) keeps a session
        # only when its own data says so, as below; the other due users' sessions go by key.
        kept_due = keep.only_user_ids.intersection(keep.kept_ids)
        claimed = _keys_of_users(kept_due)
        good = _checked(engine, claimed, keep)
        due = _keys_of_users(keep.only_user_ids - kept_due) + [key for key in claimed if key not in good]
        return replace(keep, due_keys=frozenset(due))
    if keep.kept_ids:
        claimed = _keys_of_users(keep.kept_ids)
        good = _checked(engine, claimed, keep)
        if not dry_run:  # a stale row (its session gone) goes now; a forged one with its session
            failed = [key for key in claimed if key not in good]
            for start in range(0, len(failed), CHUNK):
                part = failed[start:start + CHUNK]
                forget([key for key, present in zip(part, _present(engine, part, None)) if not present])
        return replace(keep, indexed_kept=good)
    return keep


def _keys_of_users(user_ids):
    user_ids = sorted(user_ids)
    keys = []
    for start in range(0, len(user_ids), CHUNK):
        keys += SessionOwner.objects.filter(user_id__in=user_ids[start:start + CHUNK]).values_list(
            "session_key", flat=True)
    return keys


def _checked(engine, keys, keep):
    """The keys among `keys` (rows naming a kept user) whose live stored session, decoded (signature
    checked where the store signs), names a kept user: the session's own data decides."""
    from students.purge.remembered import stored  # remembered imports the engine modules

    now, good = timezone.now(), set()
    for start in range(0, len(keys), CHUNK):
        for key, session in stored(engine, keys[start:start + CHUNK], now).items():
            user_id = user_id_of(session)
            if user_id is not None and keep.keeps(user_id):
                good.add(key)
    return frozenset(good)


def known(keys):
    """{session key: user id} for the keys among `keys` that have a row."""
    keys = list(keys)
    connection = connections[router.db_for_read(SessionOwner)]
    owner_table, owner_key = table_sql(connection)
    user = connection.ops.quote_name(SessionOwner._meta.get_field("user_id").column)
    found = {}
    # Raw SQL: through the ORM's values_list, 100k keys took 0.9 s, twice the query's own time.
    with connection.cursor() as cursor:
        for start in range(0, len(keys), CHUNK):
            part = keys[start:start + CHUNK]
            cursor.execute(f"SELECT {owner_key}, {user} FROM {owner_table} "
                           f"WHERE {owner_key} IN ({', '.join(['%s'] * len(part))})", part)
            found.update(cursor.fetchall())
    return found


def verdict(keep, key, owner):
    """What the index decides for the live session `key` whose row names `owner` (None: no row)."""
    if owner is None:
        return Verdict.READ
    if keep.only_user_ids is not None:
        return Verdict.DELETE if key in keep.due_keys else Verdict.KEEP
    return Verdict.KEEP if key in keep.indexed_kept else Verdict.DELETE


def tally(counts, keep, verdict_, live_split):
    """Count a session the index decided (KEEP or DELETE): a row is written at login, so it was
    an authenticated session. Returns True when kept."""
    if live_split:
        counts.decoded = True
        counts.authenticated += 1
    if verdict_ is Verdict.KEEP:
        counts.kept += 1
        return True
    return False


def table_sql(connection):
    """(quoted table, quoted key column) of the index, for SQL written next to the session table's."""
    quote = connection.ops.quote_name
    return quote(SessionOwner._meta.db_table), quote(SessionOwner._meta.get_field("session_key").column)


def unknown_sql(connection, table, key):
    """SQL condition on the session table (quoted `table` and `key` column): the session has no row."""
    owner_table, owner_key = table_sql(connection)
    return f"NOT EXISTS (SELECT 1 FROM {owner_table} o WHERE o.{owner_key} = {table}.{key})"


def forget_sql(cursor, connection, keys):
    """Delete the rows of these session keys with this cursor (the caller's transaction)."""
    owner_table, owner_key = table_sql(connection)
    if connection.vendor == "postgresql":
        if keys:
            cursor.execute(f"DELETE FROM {owner_table} WHERE {owner_key} = ANY(%s)", [list(keys)])
        return
    for start in range(0, len(keys), CHUNK):
        part = keys[start:start + CHUNK]
        cursor.execute(f"DELETE FROM {owner_table} WHERE {owner_key} IN ({', '.join(['%s'] * len(part))})", part)


def forget(keys):
    """Delete the rows of these session keys (the cache and file engines, after their deletes), in one
    transaction: one commit per call, not one per chunk of keys (on SQLite each commit is a disk sync;
    a full purge on cache took 7.8x its floor committing every 500 keys, benchmarked)."""
    if not keys:
        return
    using = router.db_for_write(SessionOwner)
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        forget_sql(cursor, connection, list(keys))


class RowsInStep:
    """The index's rows kept in step with what a cache or file purge deletes, batch by batch.

    A full purge or a keep rule leaves few sessions: their keys are gathered, and every other row of a
    login before the run's start goes at the end (forget_all_but). A zone run leaves most: the rows of
    what each batch deleted go with it (forget)."""

    def __init__(self, keep, dry_run):
        self.follows = keep.indexed and not dry_run
        self.few_left = self.follows and keep.only_user_ids is None
        self.left, self.started = set(), timezone.now()

    def batch(self, listed, deleted):
        """`listed`: the session keys a batch saw; `deleted`: those it deleted."""
        if self.few_left:
            deleted = set(deleted)
            self.left.update(key for key in listed if key not in deleted)
        elif self.follows:
            forget(deleted)

    def finish(self):
        if self.few_left:
            forget_all_but(self.left, self.started)


def forget_all_but(left, instant):
    """After a full purge or a keep rule (db_postgres, cache, file), which deleted every session there at
    `instant` but the keys in `left` (kept, spared, skipped: few): drop every other row of a login
    before `instant` in one pass, not by key per batch (deleting 75k rows by key took 1.0 s of a
    2.3 s --keep-staff at 100k on cache, 0.37 s of a 0.93 s full purge). A row of a session that
    survived unlisted (a key Django moved during the run keeps its login time) goes too: that session
    is then read as one from before the index.

    On SQLite, under the write lock, the rows that stay are copied aside, the table emptied by one
    unqualified DELETE (SQLite frees whole pages without visiting rows, its "truncate optimization")
    and the rows copied back."""
    using = router.db_for_write(SessionOwner)
    connection = connections[using]
    left = sorted(left)
    owner_table, owner_key = table_sql(connection)
    logged_in_at = connection.ops.quote_name(SessionOwner._meta.get_field("logged_in_at").column)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {owner_table} WHERE {owner_key} <> ALL(%s::text[]) AND {logged_in_at} < %s",
                           ["{" + array_items(left) + "}", instant])
        return
    if connection.vendor != "sqlite":
        SessionOwner.objects.using(using).filter(logged_in_at__lt=instant).exclude(session_key__in=left).delete()
        return
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {owner_table} WHERE 0")  # take the write lock: no login lands now
        cursor.execute("CREATE TEMP TABLE purge_left (session_key text PRIMARY KEY)")
        cursor.executemany("INSERT INTO purge_left VALUES (%s)", [(key,) for key in left])
        cursor.execute(f"CREATE TEMP TABLE purge_owners AS SELECT * FROM {owner_table} WHERE {logged_in_at} >= %s "
                       f"OR {owner_key} IN (SELECT session_key FROM purge_left)",
                       [connection.ops.adapt_datetimefield_value(instant)])
        cursor.execute(f"DELETE FROM {owner_table}")
        cursor.execute(f"INSERT INTO {owner_table} SELECT * FROM purge_owners")
        cursor.execute("DROP TABLE temp.purge_left")
        cursor.execute("DROP TABLE temp.purge_owners")


def sweep(engine, now=None):
    """Drop the rows whose session is gone and whose login is older than SESSION_COOKIE_AGE (only
    such a session can have ended without the server or the purge removing its row). Returns how
    many rows went."""
    if engine.kind == "signed_cookies":
        return 0
    now = now or timezone.now()
    old = SessionOwner.objects.filter(logged_in_at__lt=now - timedelta(seconds=settings.SESSION_COOKIE_AGE))
    gone = 0
    last = ""
    while True:
        keys = list(old.filter(session_key__gt=last).order_by("session_key").values_list("session_key", flat=True)[:CHUNK])
        if not keys:
            return gone
        last = keys[-1]
        missing = [key for key, present in zip(keys, _present(engine, keys, now)) if not present]
        if missing:
            gone += SessionOwner.objects.filter(session_key__in=missing).delete()[0]


def _present(engine, keys, now):
    """For each key: is its session still in the store (live or not yet cleared)?"""
    from students.purge import files
    from students.purge.db_generic import session_table
    from students.purge.redis_keys import client_of, listable_cache

    if engine.kind in ("db", "cached_db"):
        model, using = session_table(engine)
        found = set(model._default_manager.using(using).filter(session_key__in=keys).values_list("session_key", flat=True))
        return [key in found for key in keys]
    if engine.kind == "cache":
        cache = listable_cache(engine)
        pipe = client_of(cache).pipeline(transaction=False)
        for key in keys:
            pipe.exists(cache.make_key(engine.store_class.cache_key_prefix + key))
        return [bool(n) for n in pipe.execute()]
    folder = files.session_folder()
    return [os.path.exists(os.path.join(folder, settings.SESSION_COOKIE_NAME + key)) for key in keys]
