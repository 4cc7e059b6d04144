"""The file engine: the session files under SESSION_FILE_PATH whose names are the cookie name
followed by a session key (other files in the folder, Django's temp files included, are left alone).

Full purge (nobody kept, not a dry run): os.scandir the folder, stat and unlink each session file.
Nothing is read. Floor: os.scandir + unlink of the prefixed files.

Counting without decoding: a file's modification time is its last save, so it counts as expired
when mtime + SESSION_COOKIE_AGE has passed (what the store shows without reading it). A session
with a custom set_expiry is counted by that same rule, even on a dry run, so that a dry run
predicts the real run's counts; either way it is deleted. The live split is only known when
files are read: on a dry run, or when someone is kept.

A scheduled run (`before`): a file last modified before `before` was saved, hence began, before
it and goes unread (common.saved_since: the same assumption as the db path); only files saved
since are read and decoded, and spared when their session began after `before`. Ages are taken
on the file system's clock (time.time() - mtime), so they compare with Django's clock even where
a test pins it.

A file another user owns (its uid is not this process's) is neither read nor deleted: it is
skipped and counted (Counts.not_owned), and the run says so. Such files are another site's
sessions in a shared folder (SESSION_FILE_PATH empty means the system temp folder), or this
site's written by a web server running as another user; deleting or reading them is not this
job's to do (in a sticky folder like /tmp it cannot: it used to fail part-way on the first one).
`manage.py check` warns about such folders (students.checks).
"""
import os
import tempfile
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from students.purge import owners
from students.purge.common import Counts, failing_says_what_was_done, is_session_key
from students.selection import Decoder


def purge(engine, keep, dry_run, batch_size, heartbeat, before):
    folder = session_folder()
    if not os.path.isdir(folder):
        raise ImproperlyConfigured(f"SESSION_FILE_PATH {folder!r} is not an existing folder")
    prefix = settings.SESSION_COOKIE_NAME
    decoder = Decoder(engine.store_class)
    decode = dry_run or keep.keeps_anyone
    cookie_age = settings.SESSION_COOKIE_AGE
    # A file saved longer ago than this (seconds) was saved before `before`.
    before_age = (timezone.now() - before).total_seconds() if before is not None else None
    before_ts = before.timestamp() if before is not None else None
    index_rows = owners.RowsInStep(keep, dry_run)
    counts = Counts()
    uid = os.geteuid()
    with failing_says_what_was_done(counts):
        with os.scandir(folder) as entries:
            now = time.time()
            for chunk in _chunks(_session_files(entries, prefix), batch_size):
                # The index settles what it can (owners.verdict); only the rest is read, as before it.
                owner_of = owners.known(name[len(prefix):] for name, _ in chunk) if decode and keep.indexed else {}
                gone = []
                for name, entry in chunk:
                    key = name[len(prefix):]
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed meanwhile (logout, clearsessions)
                    if stat.st_uid != uid:
                        counts.not_owned += 1
                        continue
                    age = now - stat.st_mtime
                    if age >= cookie_age:
                        counts.expired += 1
                        if not dry_run and _unlink(entry.path):
                            counts.deleted_expired += 1
                            gone.append(key)
                        continue
                    if counts.remembered(key, keep, live_split=decode):
                        continue
                    recent = before_age is not None and age <= before_age
                    verdict = owners.verdict(keep, key, owner_of.get(key))
                    if recent and verdict is owners.Verdict.DELETE:
                        verdict = owners.Verdict.READ  # only its data says whether it began after `before`
                    if verdict is not owners.Verdict.READ:
                        if owners.tally(counts, keep, verdict, live_split=True):
                            continue
                    elif recent or decode:
                        data = read(entry.path)
                        if data is None:
                            continue
                        if recent or not data:
                            session = decoder.decode(data) if data else {}  # Django loads an empty file as {}
                            if (recent and counts.spares(session, before_ts)) or (
                                    decode and counts.tally(session, keep)):
                                continue
                        elif counts.tally_data(decoder, data, keep, verify_all=dry_run):
                            continue
                    if not dry_run and _unlink(entry.path):
                        counts.deleted_active += 1
                        gone.append(key)
                index_rows.batch([name[len(prefix):] for name, _ in chunk], gone)
                heartbeat()
        index_rows.finish()
        heartbeat()
    counts.decoded = decode
    return counts


def _session_files(entries, prefix):
    """(name, entry) of the session files among a folder's entries: the cookie name and a session key."""
    for entry in entries:
        name = entry.name
        if (name.startswith(prefix) and is_session_key(name[len(prefix):])
                and entry.is_file(follow_symlinks=False)):  # d_type from the listing: no stat
            yield name, entry


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def not_owned_report(count, dry_run=False):
    """What a run says about the session files it skipped because another user owns them."""
    folder = session_folder()
    did = "Would skip" if dry_run else "Skipped"
    return (f"{did} {count} session file(s) in {folder} that another user owns: not deleted. The logout "
            f"cutoff ends such sessions of this site at their next request; make SESSION_FILE_PATH a folder "
            f"only the site user (uid {os.geteuid()}) writes to (`manage.py check` warns about it)")


def session_folder():
    """Where Django's file engine keeps sessions. From the setting, not
    store_class._get_storage_path(): that one caches the first answer."""
    return settings.SESSION_FILE_PATH or tempfile.gettempdir()


def read(path):
    """The file's text; "\\0" (undecodable) when it cannot be read as text; None when gone."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except FileNotFoundError:
        return None  # removed meanwhile (logout, clearsessions)
    except (OSError, UnicodeDecodeError):
        return "\0"


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
