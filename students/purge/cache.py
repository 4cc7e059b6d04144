"""The cache engine on Django's RedisCache (elsewhere the keys cannot be listed: UnsupportedEngine).

Full purge (nobody kept, not a dry run): SCAN MATCH the engine's session-key pattern (this cache's
KEY_PREFIX and VERSION, then exactly 32 key characters, as Django makes session keys: other
prefixes, versions, cache entries and cached_db's keys are never matched), then UNLINK each batch
in one pipeline. Nothing is read or decoded. Floor: the same SCAN + UNLINK, nothing else.

Counting without decoding: every key found is a live session (Redis drops expired keys itself, so
the expired count is 0), and the deleted count is what UNLINK says it removed; the live split
(authenticated/anonymous) is left unknown. A dry run, or a keep rule, reads the values of each
batch (one MGET) and decodes them, so the split is exact there.

A scheduled run (`before`): a key's TTL is its expiry (last save + SESSION_COOKIE_AGE, the
db path's assumption: common.saved_since), so one whose expiry is before saved_since(before) began
before it and goes unread; only those saved since are read and decoded, and spared when their
session began after `before`.
"""
import pickle
from datetime import timedelta

from django.utils import timezone

from students.purge import owners
from students.purge.common import Counts, failing_says_what_was_done, saved_since
from students.purge.redis_keys import SESSION_KEY_GLOB, client_of, glob_escape, listable_cache, scan_batches, unlink


def check(engine):
    listable_cache(engine)


def purge(engine, keep, dry_run, batch_size, heartbeat, before):
    cache = listable_cache(engine)
    client = client_of(cache)
    pattern = glob_escape(cache.make_key(engine.store_class.cache_key_prefix)) + SESSION_KEY_GLOB
    decode = dry_run or keep.keeps_anyone
    before_ts = before.timestamp() if before is not None else None
    prefix = engine.store_class.cache_key_prefix
    remembered = {cache.make_key(prefix + key).encode(): key for key in keep.remembered}
    key_start = len(cache.make_key(prefix))
    index_rows = owners.RowsInStep(keep, dry_run)
    counts = Counts()
    with failing_says_what_was_done(counts):
        for keys in scan_batches(client, pattern, batch_size):
            session_key = {key: key[key_start:].decode() for key in keys}  # a raw key ends with it
            # The index settles what it can (owners.verdict); only the rest is read, as before it.
            decided = _decided_by_index(session_key, keep) if decode and keep.indexed else {}
            recent = set()
            if before is not None:
                # A session kept unread needs no sparing: only the others' TTLs are asked. One saved
                # since the run's instant is read as before the index: only its data says when it began.
                recent = _maybe_saved_since(
                    client, [key for key in keys if decided.get(key) is not owners.Verdict.KEEP], before)
                decided = {key: verdict for key, verdict in decided.items() if key not in recent}
            to_read = [key for key in keys if key not in decided] if decode else [key for key in keys if key in recent]
            values = dict(zip(to_read, client.mget(to_read))) if to_read else {}
            doomed = []
            for key in keys:
                if key in remembered and counts.remembered(remembered[key], keep, live_split=decode):
                    continue
                if key in decided:
                    if not owners.tally(counts, keep, decided[key], live_split=True):
                        doomed.append(key)
                    continue
                if key in values:
                    raw = values[key]
                    if raw is None:
                        continue  # gone since it was listed: expired or logged out
                    session = _session_of(raw)
                    if key in recent and counts.spares(session, before_ts):
                        continue
                    if decode and counts.tally(session, keep):
                        continue
                doomed.append(key)
            if not dry_run:
                counts.deleted_active += unlink(client, doomed)
                index_rows.batch(session_key.values(), [session_key[key] for key in doomed])
            heartbeat()
        index_rows.finish()
    counts.decoded = decode
    return counts


def _decided_by_index(session_key, keep):
    """{raw key: owners.Verdict} for the keys the index settles (KEEP or DELETE unread);
    `session_key`: {raw key: its session key}."""
    owner_of = owners.known(session_key.values())
    verdicts = {}
    for key, session in session_key.items():
        verdict = owners.verdict(keep, session, owner_of.get(session))
        if verdict is not owners.Verdict.READ:
            verdicts[key] = verdict
    return verdicts


def _maybe_saved_since(client, keys, before):
    """The keys that may have been saved at or after `before` (their TTL says so, or says nothing)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    now, bound = timezone.now(), saved_since(before)
    # PTTL: -1 no expiry (not how Django saves a session: read it), -2 gone (MGET will say so).
    return {key for key, ttl in zip(keys, pipe.execute())
            if ttl < 0 or now + timedelta(milliseconds=ttl) >= bound}


def _session_of(raw):
    """The session dict a stored value holds; None (undecodable) for anything else.

    Django's RedisCache stores an int as its digits and anything else pickled (its RedisSerializer),
    so a session always starts with pickle's PROTO opcode; its loads() tries int() first, which
    costs an exception per session (measured: a sixth of a --keep-staff run)."""
    if raw[:1] != b"\x80":
        return None
    try:
        value = pickle.loads(raw)
    except Exception:  # not written by Django's RedisCache: whatever the error, not a session
        return None
    return value if isinstance(value, dict) else None
