"""The "keep me signed in" sessions a purge keeps (--keep-remembered; students.remember writes them).

Found without decoding every session: the RememberedLogin rows the server wrote at each such login
name them. Only those sessions are read from the store and checked: the data decodes (on db,
cached_db and file its signature must hold; a cache entry is written by the server alone), carries
the remembered marker, belongs to the row's user, and neither has expired. The engines then spare
exactly the keys that passed (KeepRule.remembered) and purge everything else as a full purge does.

A real run removes the rows that failed (session gone or expired, marker missing, another user's,
bad signature), so the table holds only live remembered logins; a dry run changes nothing.
"""
import os
from dataclasses import replace
from itertools import islice

from django.conf import settings
from django.db import router
from django.utils import timezone

from students.models import RememberedLogin
from students.purge import files
from students.purge.common import CHUNK, worker_process
from students.purge.db_generic import session_table
from students.purge.redis_keys import session_cache
from students.selection import REMEMBERED_KEY, Decoder, user_id_of

PAGE = 2000  # rows per page read, and checked here or in the worker process


def verified(engine, keep, dry_run):
    """`keep` with `remembered` filled in: the keys of the remembered sessions that pass the checks."""
    if not keep.keep_remembered:
        return keep
    now = timezone.now()
    rows = RememberedLogin.objects
    claims = dict(rows.filter(expires_at__gt=now).values_list("session_key", "user_id"))
    good = _passing(engine, claims, now)
    if not dry_run:
        rows.filter(expires_at__lte=now).delete()
        failed = [key for key in claims if key not in good]
        for start in range(0, len(failed), CHUNK):
            rows.filter(session_key__in=failed[start:start + CHUNK]).delete()
    return replace(keep, remembered=good)


def kept_among(engine, keys, now):
    """The keys among `keys` whose remembered login passes the same checks (the site's own cleanup
    turns, students.cleanup, which look at a few thousand sessions at a time)."""
    claims = {}
    for start in range(0, len(keys), CHUNK):
        claims.update(RememberedLogin.objects.filter(session_key__in=keys[start:start + CHUNK], expires_at__gt=now)
                      .values_list("session_key", "user_id"))
    return _passing(engine, claims, now)


def _passing(engine, claims, now):
    """The keys of `claims` ({session key: user id}, from the rows) whose stored session holds."""
    if engine.kind in ("db", "cached_db") and session_table(engine)[1] == router.db_for_read(RememberedLogin):
        return _passing_rows(engine, claims, now)
    keys, good = list(claims), set()
    for start in range(0, len(keys), CHUNK):  # a chunk's decoded sessions at a time, not all of them
        sessions = stored(engine, keys[start:start + CHUNK], now)
        good.update(key for key, session in sessions.items() if _holds(session, claims[key]))
    return frozenset(good)


def _passing_rows(engine, claims, now):
    """_passing on db and cached_db with both tables in one database: the claimed sessions' rows in one
    query that joins the two (through a server-side cursor), not 500 keys at a time: at 1M sessions on
    PostgreSQL, 100 lookups of 500 keys took 1.7 s of a 4.4 s check of 49,884 remembered logins.
    Every other page is checked in a forked process (common.worker_process) while this one reads and
    checks the next: the signature checks are CPU-bound Python, 1.7 s of that check."""
    model, using = session_table(engine)
    live_claims = RememberedLogin.objects.using(using).filter(expires_at__gt=now).values("session_key")
    rows = iter(model._default_manager.using(using).filter(session_key__in=live_claims, expire_date__gt=now)
                .values_list("session_key", "session_data").iterator(chunk_size=PAGE))
    good, checked_there = [], []
    with worker_process() as other:
        for number, read in enumerate(iter(lambda: list(islice(rows, PAGE)), [])):
            # a claim written since `claims` was read waits for the next run
            page = [(key, data, claims[key]) for key, data in read if key in claims]
            if number % 2 == 0:
                checked_there.append(other.submit(passing_page, engine.store_class, page))
            else:
                good += passing_page(engine.store_class, page)
        for future in checked_there:
            good += future.result()
    return frozenset(good)


def passing_page(store_class, page):
    """The keys of a page of (session key, stored data, the claim's user id) whose session holds."""
    decoder = Decoder(store_class)
    return [key for key, data, user_id in page if _holds(decoder.decode(data), user_id)]


def sparing_sql(connection, table, key, keep):
    """SQL to append to a DELETE of the session table (quoted `table` and `key` column) so it
    spares the rule's remembered sessions: an anti-join on RememberedLogin, which after verified()
    holds only checked rows (and logins the server wrote since). One hash of the table per DELETE
    instead of the kept keys sent with each. The table lives with the sessions (the default
    database, like the rest of this app); elsewhere the DELETE fails loudly, keeping nothing wrong."""
    if not keep.remembered:
        return ""
    remembered = connection.ops.quote_name(RememberedLogin._meta.db_table)
    column = connection.ops.quote_name(RememberedLogin._meta.get_field("session_key").column)
    return f" AND NOT EXISTS (SELECT 1 FROM {remembered} r WHERE r.{column} = {table}.{key})"


def _holds(session, user_id):
    return bool(session) and session.get(REMEMBERED_KEY) is True and user_id_of(session) == user_id


def stored(engine, keys, now):
    """{key: session dict or None} for these session keys, as the engine's store holds them."""
    if engine.kind in ("db", "cached_db"):  # cached_db: the row is the truth, the cache only a copy
        model, using = session_table(engine)
        decoder = Decoder(engine.store_class)
        found = model._default_manager.using(using).filter(session_key__in=keys, expire_date__gt=now)
        return {key: decoder.decode(data) for key, data in found.values_list("session_key", "session_data")}
    if engine.kind == "cache":
        prefix = engine.store_class.cache_key_prefix
        found = session_cache().get_many([prefix + key for key in keys])
        return {key: found.get(prefix + key) for key in keys}
    if engine.kind == "file":
        folder, decoder = files.session_folder(), Decoder(engine.store_class)
        data = {key: files.read(os.path.join(folder, settings.SESSION_COOKIE_NAME + key)) for key in keys}
        return {key: decoder.decode(text) if text else None for key, text in data.items()}
    return {}
