"""What every engine's purge shares: the Counts it returns, and the small rules they all apply."""
import gc
import logging
import multiprocessing
import string
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings

from students.selection import began_before, user_id_of

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000
CHUNK = 500  # keys or user ids per query or cache read (under SQLite's old limit of 999 query parameters)
SESSION_KEY_CHARS = frozenset(string.ascii_lowercase + string.digits)  # what Django's session keys use


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
    not_owned: int = 0  # session files another user owns: neither read nor deleted (students.purge.files)
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
        kept_unread = keep.keeps_unread(session, user_id)  # another zone's, in a per-user time zone run
        if not kept_unread and keep.keeps(user_id):  # claims a kept user: believe it only if signed
            return self.tally(decoder.decode(data), keep)
        # Kept unread, or not kept whatever the signature says: count it as peeked (per row, so inline).
        self.decoded = True
        if session is None:
            self.undecodable += 1
        elif user_id is None:
            self.anonymous += 1
        else:
            self.authenticated += 1
        self.kept += kept_unread
        return kept_unread

    def tally(self, session, keep):
        """Count one live, decoded session (None = undecodable); True when the rule keeps it."""
        self.decoded = True
        if session is None:
            self.undecodable += 1  # never kept: we cannot tell whose it is
            return False
        user_id = user_id_of(session)
        if user_id is None:
            self.anonymous += 1
            if keep.keep_anonymous:
                self.kept += 1
            return keep.keep_anonymous
        self.authenticated += 1
        if keep.keeps(user_id):
            self.kept += 1
            return True
        return False

    def remembered(self, key, keep, live_split=False):
        """True (counted as kept) when `key` is one of the rule's checked "keep me signed in"
        sessions (KeepRule.remembered, students.purge.remembered): nothing to decode. live_split:
        the caller reports the live split, so count it as authenticated too."""
        if key not in keep.remembered:
            return False
        self.kept += 1
        if live_split:
            self.decoded = True
            self.authenticated += 1
        return True

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

    def add(self, other):
        """Add another purge's counts (a per-user time zone run purges once per group of zones)."""
        for name, value in asdict(other).items():
            if isinstance(value, bool):
                setattr(self, name, getattr(self, name) or value)
            elif isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        self.note = self.note or other.note

    def as_dict(self):
        return asdict(self)


def noop():
    pass


@contextmanager
def failing_says_what_was_done(counts):
    """An error part-way through a purge carries the counts so far (exc.counts_so_far), so the
    run can say what it deleted before it stopped."""
    try:
        yield
    except Exception as exc:
        exc.counts_so_far = counts
        raise


def saved_since(before):
    """The expiry date from which a session was last saved at or after `before`.

    Django stores a session's expiry as its save time + SESSION_COOKIE_AGE (a row's expire_date, a
    Redis key's TTL; a file's mtime is the save time itself), and a session is never saved before
    it began. So one whose expiry is earlier than this began before `before` and can go without
    decoding. This holds while nobody calls set_expiry: a shorter custom expiry, or an age raised
    while sessions were stored, makes a session look older than it is."""
    return before + timedelta(seconds=settings.SESSION_COOKIE_AGE)


def array_items(keys):
    """The elements of a PostgreSQL text[] literal, "{" + array_items(keys) + "}", to pass as one
    `%s::text[]` parameter: quoted here once, each double-quoted with its backslashes and quotes
    escaped, so no key (Django's are letters and digits) can split. psycopg quoted each element of a
    list parameter anew for each of the 51 ranges' DELETEs at 1M: a late run's keys saved since its
    instant took it 3.04 s, 2.42 s with this (median of 3)."""
    return ",".join('"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"' for key in keys)


def is_session_key(key):
    """Django's own keys (8+ lowercase letters and digits); its temp files and foreign names fail."""
    return len(key) >= 8 and set(key) <= SESSION_KEY_CHARS


@contextmanager
def worker_process():
    """One forked process for CPU-bound Python (sorting heads, checking signatures) beside this one,
    as an executor; this process itself where the host cannot give one (no working /dev/shm for
    multiprocessing's semaphores, as in some containers): slower, still right. The child gets its
    work as arguments and never touches a database connection (a thread would fight this process
    for the GIL: measured no faster)."""
    try:
        executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    except (OSError, ImportError, NotImplementedError) as exc:
        logger.warning("Working in this process: no worker process available (%s)", exc)
        yield _InThisProcess()
        return
    # Frozen objects are left alone by the child's garbage collections, so their pages stay shared
    # instead of being copied into it (gc.freeze's documented use before a fork).
    gc.freeze()
    try:
        with executor:
            yield executor
    finally:
        gc.unfreeze()


class _InThisProcess:
    """The part of an executor worker_process's users need: each call run at once, here."""

    def submit(self, function, *args):
        future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future
