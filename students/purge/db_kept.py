"""Finding the kept sessions in a session table without decoding them all (db_postgres and
db_sqlite, when a keep rule keeps someone). The database rules out what it can by plain string
tests on the stored data (not_kept_sql), a child process sorts the rest by the first HEAD_CHARS of
their data (kept_keys), and only the sessions that claim a kept user are read whole and have their
signature checked.
"""
import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from students.selection import Decoder, PayloadPatterns, triage

logger = logging.getLogger(__name__)


def not_kept_sql(connection, data, keep, engine):
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


def kept_keys(model, using, now, engine, keep, counts, pages):
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
    """The part of an executor kept_keys uses, running each call at once, here."""

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


