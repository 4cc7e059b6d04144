"""The cluster-wide lock: at most one logout run at a time across all hosts sharing the database.

PostgreSQL: a session-level advisory lock (pg_try_advisory_lock), released by the server when
the connection ends, so a crashed run never blocks the next one.
Other databases (SQLite): a RunLease row with a unique name and an expiry; the holder renews the
lease as it works (refresh()), and a lease left by a crashed run can be taken over once expired.
"""
import os
import socket
from contextlib import contextmanager, suppress
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from students.models import LogoutRun, RunLease

LOCK_NAME = "logout_all_users"
# An arbitrary constant that only this project uses as a pg advisory lock key ("nlogout").
ADVISORY_KEY = 0x6E6C6F676F7574
LEASE_SECONDS = 600


class LockHeld(Exception):
    """Another logout run holds the lock; the message says who, where known."""


class LockLost(Exception):
    """Our lease expired and another run took it over while we were still working."""


def holder_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def _running_run_description(using):
    run = LogoutRun.objects.using(using).filter(outcome=LogoutRun.Outcome.RUNNING).order_by("-started_at").first()
    if run is None:
        return ""
    return f"run started on {run.host} at {run.started_at.isoformat(timespec='seconds')}"


class _AdvisoryLock:
    def __init__(self, using):
        self.connection = connections[using]
        self.using = using

    def acquire(self):
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY])
            if not cursor.fetchone()[0]:
                detail = _running_run_description(self.using) or "no run record yet"
                raise LockHeld(f"PostgreSQL advisory lock {ADVISORY_KEY}; {detail}")

    def refresh(self):
        """Nothing to renew: the server holds the lock while our connection lives."""

    def release(self):
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])


class _LeaseLock:
    def __init__(self, using, lease_seconds):
        self.using = using
        self.lease = timedelta(seconds=lease_seconds)
        self.holder = holder_name()

    def _leases(self):
        return RunLease.objects.using(self.using).filter(name=LOCK_NAME)

    def acquire(self):
        now = timezone.now()
        try:
            with transaction.atomic(using=self.using):
                RunLease.objects.using(self.using).create(
                    name=LOCK_NAME, holder=self.holder, acquired_at=now, expires_at=now + self.lease
                )
            return
        except IntegrityError:
            pass
        # Take over a lease whose holder stopped renewing it (crashed run); one atomic UPDATE,
        # so of two runs racing for an expired lease only one wins.
        taken = self._leases().filter(expires_at__lt=now).update(
            holder=self.holder, acquired_at=now, expires_at=now + self.lease
        )
        if not taken:
            lease = self._leases().first()
            if lease is None:
                detail = "the holder just released it; try again"
            else:
                detail = (f"held by {lease.holder} since {lease.acquired_at.isoformat(timespec='seconds')}, "
                          f"lease until {lease.expires_at.isoformat(timespec='seconds')}")
            raise LockHeld(f"lease row {LOCK_NAME!r}: {detail}")

    def refresh(self):
        renewed = self._leases().filter(holder=self.holder).update(expires_at=timezone.now() + self.lease)
        if not renewed:
            raise LockLost(f"the lease {LOCK_NAME!r} expired and was taken over by another run")

    def release(self):
        self._leases().filter(holder=self.holder).delete()


@contextmanager
def run_lock(using="default", lease_seconds=LEASE_SECONDS):
    """Hold the cluster-wide logout lock for the block, or raise LockHeld at once (never waits)."""
    if connections[using].vendor == "postgresql":
        lock = _AdvisoryLock(using)
    else:
        lock = _LeaseLock(using, lease_seconds)
    lock.acquire()
    try:
        yield lock
    except BaseException:
        # Keep the original error visible even if releasing fails too (e.g. the database went away;
        # an advisory lock then dies with its connection, a lease with its expiry).
        with suppress(DatabaseError):
            lock.release()
        raise
    lock.release()
