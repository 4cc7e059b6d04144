"""Finding the kept sessions in a session table without decoding them all (db_postgres and
db_sqlite, when a keep rule keeps someone). The database rules out what it can by plain string
tests on the stored data (not_kept_sql), a child process sorts the rest by the first HEAD_CHARS of
their data (kept_keys), and only the sessions that claim a kept user are read whole and have their
signature checked.
"""
from students.purge.common import worker_process
from students.selection import Decoder, PayloadPatterns, triage


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

    with worker_process() as sorting:
        pending = None
        for tag, heads in pages:  # reading the next page overlaps the sorting of this one
            future = sorting.submit(triage, keep, heads)
            if pending:
                yield settle(*pending)
            pending = tag, future
        if pending:
            yield settle(*pending)
