"""How each session engine is purged: one module per engine, each with the same small interface,

    purge(engine, keep, dry_run, batch_size, heartbeat, before) -> Counts

streaming sessions in batches, never loading them all. Each module's docstring says what it does,
its floor (the least any purge of that store must do) and how it counts without decoding.

db, cached_db  db_postgres (PostgreSQL 14+: block ranges), db_sqlite (db on SQLite: one DELETE),
               db_generic (dry runs, cached_db on SQLite, other databases: pages in key order).
               cached_db also removes the cache entries of the rows it deletes.
file           files: the session files under SESSION_FILE_PATH.
cache          cache: Django's RedisCache only (SCAN); any other cache raises UnsupportedEngine.
signed_cookies nothing is stored on the server; the logout cutoff (students.cutoff) ends them.

A per-user time zone run (students.zones.restricted: KeepRule.only_user_ids, keep_anonymous) keeps
every session but those of the users in the zones it stands for; db and cached_db take db_generic.

The ownership index (students.models.SessionOwner; students.purge.owners): when it holds rows, a keep
rule reads only the sessions whose row names a kept user (checked: their own data decides) and those
with no row; a per-user time zone run only those whose row names a due user and those with no row.
Every engine deletes the rows of the sessions it deletes; owners.sweep drops rows whose session
expired by itself.

"Keep me signed in" sessions (KeepRule.keep_remembered): the rows written at login name them;
remembered.verified checks only those sessions, and each engine spares exactly the keys that passed.

A scheduled run (`before`: the instant it stands for) deletes only sessions that began before it,
plus expired ones; sessions that began after it survive. Each engine reads the save time its store
shows (expire_date, mtime, TTL: common.saved_since) and decodes only what may have begun after it.

Each batch is its own transaction, so no single long lock blocks logins for the whole run.
Expired sessions count as expired when their expiry <= the run's start, as Django's loaders do.
"""
from django.db import connections

from students.purge import cache, db_generic, db_postgres, db_sqlite, files, owners, remembered
from students.purge import common
from students.purge.common import DEFAULT_BATCH_SIZE, Counts, noop
from students.purge.db_generic import delete_sessions

__all__ = ["DEFAULT_BATCH_SIZE", "Counts", "check_purgeable", "delete_sessions", "purge"]

SIGNED_COOKIES_NOTE = ("signed_cookies keeps sessions in the browser, so there is nothing to delete on the "
                       "server; the logout cutoff ends them at their next request")


def check_purgeable(engine):
    """Raise UnsupportedEngine before anything is changed, when this engine cannot be purged."""
    if engine.kind == "cache":
        cache.check(engine)


def purge(engine, keep, *, dry_run=False, batch_size=DEFAULT_BATCH_SIZE, heartbeat=noop, before=None):
    """Delete (or on dry_run only count) every session the KeepRule does not keep (its users, and
    with keep_remembered the checked "keep me signed in" sessions), plus expired ones.
    With `before` (aware datetime: the scheduled instant a run stands for), only sessions that
    began before it; those that began after are spared (counts.spared).

    heartbeat() is called after every batch (the lock renews its lease there)."""
    check_purgeable(engine)
    if engine.kind == "signed_cookies":
        return Counts(note=SIGNED_COOKIES_NOTE)
    keep = remembered.verified(engine, keep, dry_run)
    keep = owners.indexed(engine, keep, dry_run)
    counts = _engine_module(engine, keep, dry_run).purge(engine, keep, dry_run, batch_size, heartbeat, before)
    if not dry_run:
        with common.failing_says_what_was_done(counts):
            owners.sweep(engine)
    return counts


def _engine_module(engine, keep, dry_run):
    if engine.kind == "file":
        return files
    if engine.kind == "cache":
        return cache
    if keep.only_user_ids is not None:
        # A per-user time zone run keeps most sessions: the table paths would rewrite or re-read
        # them all; pages that delete the few are the lighter way.
        return db_generic
    connection = connections[db_generic.session_table(engine)[1]]
    if not dry_run and connection.vendor == "postgresql" and connection.pg_version >= 140000:  # TID range scans
        return db_postgres
    if not dry_run and connection.vendor == "sqlite" and engine.kind == "db":
        return db_sqlite
    return db_generic
