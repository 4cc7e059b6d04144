import argparse
import json
import os
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, ProgrammingError
from django.utils import timezone

from students import health, session_index
from students.due import NoSchedule, NotDue, due_at
from students.engines import UnsupportedEngine
from students.lock import LockHeld, LockLost
from students.logout import logout_all_users
from students.purge import DEFAULT_BATCH_SIZE
from students.purge.files import not_owned_report
from students.selection import UnknownUsers

EXIT_LOCK_HELD = 75  # EX_TEMPFAIL: another host is doing the job right now
EXIT_NOT_DUE = 3  # a scheduled run skipped: not due yet, or already done


def _one_line(exc):
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _done_so_far(exc):
    """What a failed run did before it stopped (students.purge puts the counts on the error)."""
    done = getattr(exc, "counts_so_far", None)
    deleted = done.deleted_active + done.deleted_expired if done is not None else 0
    if not deleted:
        return ", no session deleted"
    return f" after deleting {deleted} session(s); the others were not deleted and this run set no logout cutoff"


def _positive_int(value):
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {value!r}")
    return int(value)


def _zone_list(zones):
    """A per-user time zone run's zones, each with the scheduled time it stood for there."""
    return ", ".join(f"{name} ({instant})" for name, instant in sorted(zones.items(), key=lambda item: item[1]))


def _write_atomically(path, data):
    """`data` as JSON at `path`, whole or not at all: a temporary file in the same folder, flushed to
    disk, then renamed over it (a reader never sees half a file, a crash never leaves one)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".summary.", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, sort_keys=True)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Command(BaseCommand):
    # The settings checks are `manage.py check`'s to report (students/checks.py): the nightly run
    # prints only its contract lines, and still purges when, say, the cutoff middleware is missing.
    requires_system_checks = []
    help = (
        "Log every user out now by deleting their sessions (on the configured session engine), "
        "clean up expired sessions, and set a logout cutoff that ends any session the purge cannot "
        "reach (signed cookies) at its next request. Exit status: 0 success, 1 failure (also when the "
        "run finished but skipped session files another user owns), 2 bad usage, "
        f"{EXIT_NOT_DUE} a scheduled run skipped (not due, or already done), "
        f"{EXIT_LOCK_HELD} another run holds the cluster-wide lock."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Change nothing; report what would be deleted and the engine detected.")
        parser.add_argument("--exclude-user", action="append", default=[], metavar="USERNAME",
                            help="Keep this user logged in (repeatable). An unknown username is an error.")
        parser.add_argument("--keep-staff", action="store_true", help="Keep staff users logged in.")
        parser.add_argument("--keep-remembered", action="store_true",
                            help='Keep "keep me signed in" sessions (each checked against the login that '
                                 "remembered it; a session that only claims it is deleted).")
        parser.add_argument("--json", action="store_true",
                            help="Print the run summary as one JSON object (for monitoring) instead of text.")
        parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                            help=f"Sessions per batch and per transaction (default {DEFAULT_BATCH_SIZE}).")
        parser.add_argument("--check-due", action="store_true",
                            help="With --scheduled: only say whether a scheduled run is due now (exit 0, printing "
                                 "what it would stand for) or not (exit 3, printing why), deleting nothing. The "
                                 "wrapper asks this before it pings /start; it records the firing, which the "
                                 "health check of per-user time zone mode watches.")
        parser.add_argument("--scheduled", action="store_true",
                            help="For schedulers: stand for the latest scheduled time that has passed (from "
                                 "`logout_schedule --set`): delete only sessions that began before it, make it "
                                 "the cutoff, and exit 3 if a successful run already stands for it.")
        parser.add_argument("--summary-file", metavar="PATH",
                            help="Also write the run's outcome, exit status and counts to PATH as one JSON "
                                 "object, on success and on failure, replacing it atomically (for the "
                                 "wrapper's metrics: they read this, not the printed lines).")
        parser.add_argument("--user", action="append", default=[], metavar="USERNAME",
                            help="Log out only this user, now (repeatable): delete their sessions the index knows "
                                 "and set a cutoff for them alone, which ends the rest (signed cookies too) at "
                                 "their next request. An unknown username is an error and nothing is done. "
                                 "Goes with --json only.")

    def handle(self, *args, **options):
        if options["user"]:
            return self._log_out_users(options)
        path = options["summary_file"]
        if path is None:
            return self._handle(options)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise CommandError(f"--summary-file {path}: the folder {folder} does not exist or is not writable",
                               returncode=2)
        if os.path.isdir(path):
            raise CommandError(f"--summary-file {path}: is a folder", returncode=2)
        # What the file says when the run stops on an error (its counts: what was done before it).
        self._outcome = {"outcome": "failed", "exit_status": 1, "error": None,
                         "deleted_active": 0, "deleted_expired": 0, "kept_sessions": 0}
        try:
            self._handle(options)
        except CommandError as exc:
            self._outcome.update(exit_status=exc.returncode, error=_one_line(exc))
            if exc.returncode == EXIT_LOCK_HELD:
                self._outcome["outcome"] = "locked"
            raise
        except SystemExit as exc:
            self._outcome.update(outcome="not_due", exit_status=exc.code)
            raise
        except BaseException as exc:
            self._outcome["error"] = _one_line(exc)
            raise
        finally:
            _write_atomically(path, self._outcome)

    def _report(self, **outcome):
        """What --summary-file writes (nothing to do without it)."""
        if hasattr(self, "_outcome"):
            self._outcome.update(outcome)

    def _handle(self, options):
        if options["check_due"]:
            return self._check_due(options)
        guard = self._scheduled_guard if options["scheduled"] else None  # None: a manual run, now
        try:
            summary = logout_all_users(
                dry_run=options["dry_run"], exclude_usernames=options["exclude_user"],
                keep_staff=options["keep_staff"], keep_remembered=options["keep_remembered"],
                batch_size=options["batch_size"], guard=guard,
            )
        except NotDue as exc:
            self._report(error=str(exc))
            self.stdout.write(json.dumps({"due": False, "message": str(exc)}) if options["json"] else str(exc))
            raise SystemExit(EXIT_NOT_DUE)
        except LockHeld as exc:
            raise CommandError(f"Another logout run holds the lock ({exc})", returncode=EXIT_LOCK_HELD)
        except (DatabaseError, OSError) as exc:
            done = getattr(exc, "counts_so_far", None)
            if done is not None:
                self._report(deleted_active=done.deleted_active, deleted_expired=done.deleted_expired)
            self._raise_for(exc)
        except (UnknownUsers, UnsupportedEngine, LockLost, ImproperlyConfigured, NoSchedule) as exc:
            raise CommandError(_one_line(exc))

        not_owned = summary.counts.not_owned and not summary.dry_run
        self._report(**summary.as_dict(), exit_status=1 if not_owned else 0, error=None)
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), sort_keys=True))
        elif summary.dry_run:
            self._report_dry_run(summary, options["verbosity"])
        else:
            self._report_run(summary, options["verbosity"])
        if not_owned:
            # The run is done and recorded (its cutoff ends those sessions too), but storage still holds
            # sessions it could not delete: exit 1, so the wrapper, its mail and the monitor say so.
            raise CommandError(not_owned_report(summary.counts.not_owned))

    @staticmethod
    def _raise_for(exc):
        """The CommandError for a DatabaseError or OSError of a run."""
        if isinstance(exc, DatabaseError):
            unmigrated = isinstance(exc, ProgrammingError) or "no such table" in str(exc)
            hint = " (has `manage.py migrate` been run on this database?)" if unmigrated else ""
            raise CommandError(f"Database error{_done_so_far(exc)}: {_one_line(exc)}{hint}")
        raise CommandError(f"Session storage error{_done_so_far(exc)}: {_one_line(exc)}")

    def _log_out_users(self, options):
        """--user: those users alone, now (students.session_index). Any option that shapes a full run
        would silently mean nothing here, so it is refused."""
        shaping = ("dry_run", "exclude_user", "keep_staff", "keep_remembered", "check_due", "scheduled",
                   "summary_file")
        clashing = [f"--{name.replace('_', '-')}" for name in shaping if options[name]]
        if options["batch_size"] != DEFAULT_BATCH_SIZE:
            clashing.append("--batch-size")
        if clashing:
            raise CommandError(f"--user logs out the named users now and cannot be combined with "
                               f"{', '.join(clashing)}", returncode=2)
        try:
            ended = session_index.log_out_users(options["user"])
        except UnknownUsers as exc:
            raise CommandError(_one_line(exc))
        except DatabaseError as exc:
            raise CommandError(f"Database error: {_one_line(exc)}")
        except OSError as exc:
            raise CommandError(f"Session storage error: {_one_line(exc)}")
        if options["json"]:
            self.stdout.write(json.dumps({"run_id": ended.run_id, "usernames": list(ended.usernames),
                                          "deleted_sessions": ended.sessions,
                                          "purge_ms": round(ended.purge_ms, 3)}, sort_keys=True))
            return
        self.stdout.write(self.style.SUCCESS(
            f"Logged out {', '.join(ended.usernames)} now by deleting {ended.sessions} indexed session(s); "
            "any other session of theirs ends at its next request"))
        self.stdout.write(f"Purge work: {ended.purge_ms:.1f} ms (run {ended.run_id})")

    def _check_due(self, options):
        """--check-due: the same decision a --scheduled run makes under the cluster lock, made without
        it (the run decides again under the lock), plus the firing's record."""
        if not options["scheduled"]:
            raise CommandError("--check-due goes with --scheduled", returncode=2)
        now = timezone.now()
        try:
            health.record_firing(now)
            due = due_at(now)
        except NotDue as exc:
            self.stdout.write(json.dumps({"due": False, "message": str(exc)}) if options["json"] else str(exc))
            raise SystemExit(EXIT_NOT_DUE)
        except NoSchedule as exc:
            raise CommandError(_one_line(exc))
        except DatabaseError as exc:
            unmigrated = isinstance(exc, ProgrammingError) or "no such table" in str(exc)
            hint = " (has `manage.py migrate` been run on this database?)" if unmigrated else ""
            raise CommandError(f"Database error: {_one_line(exc)}{hint}")
        message = f"Due: a scheduled run now stands for {due.stands_for.isoformat()}"
        self._report(outcome="due", exit_status=0, stands_for=due.stands_for.isoformat())
        self.stdout.write(json.dumps({"due": True, "message": message}) if options["json"] else message)

    @staticmethod
    def _scheduled_guard():
        """What this run stands for (students.due.due_at), read under the cluster lock."""
        return due_at(timezone.now())

    def _report_dry_run(self, summary, verbosity):
        c = summary.counts
        live = c.authenticated + c.anonymous + c.undecodable
        self.stdout.write(self.style.WARNING("DRY RUN: nothing was changed"))
        self.stdout.write(f"Session engine: {summary.engine} ({summary.engine_path})")
        self.stdout.write(f"Live sessions: {live} ({c.authenticated} authenticated, {c.anonymous} anonymous"
                          + (f", {c.undecodable} undecodable" if c.undecodable else "") + ")")
        self.stdout.write(f"Expired sessions: {c.expired}")
        if summary.kept_usernames or summary.keep_staff or summary.keep_remembered:
            self.stdout.write(f"Would keep {c.kept} session(s) ({self._who(summary)})")
        if summary.stands_for:
            self.stdout.write(f"Would spare {c.spared} session(s) that began after {summary.stands_for}, "
                              "the scheduled time this run stands for")
        if summary.zones:
            self.stdout.write(f"Would log out the users of: {_zone_list(summary.zones)}")
        self.stdout.write(f"Would log out all users by deleting {live - c.kept - c.spared} session(s)")
        self.stdout.write(f"Would also clean up {c.expired} expired session(s)")
        if c.not_owned:
            self.stdout.write(self.style.WARNING(not_owned_report(c.not_owned, dry_run=True)))
        if c.note:
            self.stdout.write(self.style.WARNING(c.note))

    def _report_run(self, summary, verbosity):
        c = summary.counts
        self.stdout.write(self.style.SUCCESS(
            f"Successfully logged out all users by deleting {c.deleted_active} session(s)"))
        self.stdout.write(f"Also cleaned up {c.deleted_expired} expired session(s)")
        if summary.kept_usernames or summary.keep_staff or summary.keep_remembered:
            self.stdout.write(f"Kept {c.kept} session(s) ({self._who(summary)})")
        if summary.stands_for:
            self.stdout.write(f"Spared {c.spared} session(s) that began after {summary.stands_for}, "
                              "the scheduled time this run stands for")
        if summary.zones:
            self.stdout.write(f"Logged out the users of: {_zone_list(summary.zones)}")
        if c.note:
            self.stdout.write(self.style.WARNING(c.note))
        if verbosity >= 2:
            self.stdout.write(f"Session engine: {summary.engine} ({summary.engine_path})")
            self.stdout.write(f"Run {summary.run_id} on {summary.host}: {summary.seconds:.2f}s; "
                              f"logout cutoff {summary.stands_for or summary.started_at}")

    @staticmethod
    def _who(summary):
        who = list(summary.kept_usernames) + (["all staff"] if summary.keep_staff else [])
        remembered = ["remembered sessions"] if summary.keep_remembered else []
        return ", ".join((["users: " + ", ".join(who)] if who else []) + remembered)
