"""Log every user out: the one entry point the command, the tests and the benchmarks call.

A real run takes the cluster-wide lock, records a LogoutRun (its start, or for a scheduled run
the instant it stands for, is the new logout cutoff), purges the configured session engine, then
records the outcome and logs one line to the "students.logout" logger. A dry run only counts: no lock, no record, no change.
"""
import logging
import socket
import time
from dataclasses import dataclass, field

from django.db import DatabaseError
from django.utils import timezone

from students import cutoff
from students.engines import detect_engine
from students.lock import run_lock
from students.models import LogoutRun
from students.purge import DEFAULT_BATCH_SIZE, Counts, check_purgeable, purge
from students.selection import resolve_keep_rule

logger = logging.getLogger("students.logout")


@dataclass
class Summary:
    dry_run: bool
    engine: str
    engine_path: str
    counts: Counts
    kept_usernames: list = field(default_factory=list)
    keep_staff: bool = False
    keep_remembered: bool = False
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    host: str = ""
    run_id: int | None = None
    stands_for: str | None = None
    zones: dict | None = None  # a per-user time zone run: {zone: ISO instant it stood for}
    outcome: str = "success"

    def as_dict(self):
        """The monitoring view (--json): flat, stable keys."""
        counts = self.counts
        return {
            "dry_run": self.dry_run, "outcome": self.outcome, "engine": self.engine,
            "engine_path": self.engine_path, "host": self.host, "run_id": self.run_id,
            "started_at": self.started_at, "stands_for": self.stands_for, "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "deleted_active": counts.deleted_active, "deleted_expired": counts.deleted_expired,
            "live_authenticated": counts.authenticated if counts.decoded else None,
            "live_anonymous": counts.anonymous if counts.decoded else None,
            "undecodable": counts.undecodable if counts.decoded else None,
            "expired": counts.expired, "kept_sessions": counts.kept,
            "kept_usernames": self.kept_usernames, "keep_staff": self.keep_staff,
            "keep_remembered": self.keep_remembered,
            "spared_sessions": counts.spared, "zones": self.zones,
            "skipped_not_owned": counts.not_owned,
            "note": counts.note,
        }


def logout_all_users(*, dry_run=False, exclude_usernames=(), keep_staff=False, keep_remembered=False,
                     batch_size=DEFAULT_BATCH_SIZE, engine_path=None, guard=None):
    """Run (or dry-run) the logout. Raises UnsupportedEngine, UnknownUsers, LockHeld, LockLost,
    DatabaseError or OSError; on any error after the run was recorded, the record says 'failed'.
    `guard` (students.due.due_at): called before anything changes, under the cluster lock for a
    real run so two hosts cannot both pass it; it raises NotDue to stop the run. It returns what the
    run stands for (students.due.Due): its latest instant is the run's cutoff, and only sessions
    that began before their group's instant are deleted (a late run spares those that began after)."""
    engine = detect_engine(engine_path)
    check_purgeable(engine)
    keep = resolve_keep_rule(exclude_usernames, keep_staff, keep_remembered)
    host = socket.gethostname()
    summary = Summary(dry_run=dry_run, engine=engine.kind, engine_path=engine.path, counts=Counts(),
                      kept_usernames=list(keep.usernames), keep_staff=keep_staff,
                      keep_remembered=keep_remembered, host=host)
    clock = time.monotonic()
    if dry_run:
        due = guard() if guard is not None else None
        stands_for = _standing(due, summary)
        summary.started_at = timezone.now().isoformat()
        summary.counts = _purge(engine, keep, due, dry_run=True, batch_size=batch_size)
        summary.finished_at = timezone.now().isoformat()
        summary.seconds = time.monotonic() - clock
        return summary

    with run_lock() as lock:
        # Holding the lock, any run still marked running is one that died without recording it.
        _mark_abandoned_runs()
        due = guard() if guard is not None else None
        stands_for = _standing(due, summary)
        run = LogoutRun.objects.create(
            started_at=timezone.now(), stands_for=stands_for, host=host, engine=engine.path,
            keep_staff=keep_staff, keep_remembered=keep_remembered, kept_usernames=list(keep.usernames),
            kept_user_ids=keep.kept_ids, zones=summary.zones,
        )
        summary.run_id, summary.started_at = run.pk, run.started_at.isoformat()
        try:
            counts = _purge(engine, keep, due, batch_size=batch_size, heartbeat=lock.refresh)
        except Exception as exc:
            _record_failure(run, exc)
            raise
        run.finished_at = timezone.now()
        run.deleted_active, run.deleted_expired, run.kept_sessions = (
            counts.deleted_active, counts.deleted_expired, counts.kept)
        run.outcome = LogoutRun.Outcome.SUCCESS
        try:
            run.save()
        except Exception as exc:
            exc.counts_so_far = counts  # the purge was done; only its record failed
            raise
    _publish_cutoff(run)
    summary.counts, summary.finished_at = counts, run.finished_at.isoformat()
    summary.seconds = time.monotonic() - clock
    logger.info(
        "Daily logout: deleted %d active and %d expired session(s) on %s (engine %s, kept %d session(s)%s)",
        counts.deleted_active, counts.deleted_expired, host, engine.kind, counts.kept,
        f" of {', '.join(keep.usernames)}" if keep.usernames else "",
    )
    return summary


def _standing(due, summary):
    """What the guard returned (students.due.Due, or None: a manual run, now) -> the instant the run
    stands for (None: none), noted with its zones on the summary."""
    stands_for = due.stands_for if due is not None else None
    summary.stands_for = stands_for and stands_for.isoformat()
    summary.zones = due.record() if due is not None else None
    return stands_for


def _purge(engine, keep, due, **options):
    """purge() once for each group of what the run stands for (students.due.Due.purges), with that
    group's instant and keep rule; a manual run (no Due) once, with no instant."""
    total = Counts()
    for before, rule in due.purges(keep) if due is not None else [(None, keep)]:
        total.add(purge(engine, rule, before=before, **options))
    return total


def _mark_abandoned_runs():
    """Under the lock, any run still marked running died without recording its outcome (killed,
    host or database lost): mark it failed, and say so."""
    for run in LogoutRun.objects.filter(outcome=LogoutRun.Outcome.RUNNING):
        run.outcome, run.error = LogoutRun.Outcome.FAILED, "abandoned: the run ended without recording an outcome"
        run.save(update_fields=["outcome", "error"])
        logger.warning("Marked run %d (started on %s at %s) failed: it ended without recording an outcome",
                       run.pk, run.host, run.started_at.isoformat(timespec="seconds"))


def _record_failure(run, exc):
    logger.error("Daily logout failed on %s: %s", run.host, exc)
    run.outcome, run.error, run.finished_at = LogoutRun.Outcome.FAILED, str(exc), timezone.now()
    done = getattr(exc, "counts_so_far", None)
    if done is not None:
        run.deleted_active, run.deleted_expired = done.deleted_active, done.deleted_expired
    try:
        run.save()
    except DatabaseError:
        pass  # the database itself is what failed; the original error is what matters


def _publish_cutoff(run):
    try:
        cutoff.publish(run)
    except Exception as exc:  # the record in the database is authoritative; web hosts re-read it
        logger.warning("Could not write the new logout cutoff to the cache (%s); web processes "
                       "pick it up from the database within %d seconds", exc, cutoff.CACHE_SECONDS)
