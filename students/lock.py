"""The cluster-wide lock: at most one logout run at a time across all hosts sharing the database.

A lease row (RunLease) on every database: whoever inserts the row, or takes over one whose
holder is gone, holds the lock. Each statement is its own short transaction, so the lock holds
behind PgBouncer in transaction pooling too, where a session-level advisory lock stays on a
pooled server connection and its unlock lands on another one (the lock then leaks).

The lease is short (LOGOUT_LOCK_LEASE_SECONDS, default LEASE_SECONDS) and the holder renews it
after every batch of the purge (refresh()). A run that died (kill -9, host lost) blocks the next
one at most until its lease expires; on the same host the next run sees at once that the
holder's process is gone and takes over. Assumes hostnames are unique among the hosts sharing
the database and their clocks agree to well within the lease (NTP).
"""
import os
import socket
from contextlib import contextmanager, suppress
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from students.models import RunLease

LOCK_NAME = "logout_all_users"
LEASE_SECONDS = 60


class LockHeld(Exception):
    """Another logout run holds the lock; the message says who, where known."""


class LockLost(Exception):
    """Our lease expired and another run took it over while we were still working."""


def holder_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def configured_lease_seconds():
    """The lease length from settings.LOGOUT_LOCK_LEASE_SECONDS (env of the same name)."""
    value = getattr(settings, "LOGOUT_LOCK_LEASE_SECONDS", None) or LEASE_SECONDS
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = 0
    if seconds < 1:
        raise ImproperlyConfigured(f"LOGOUT_LOCK_LEASE_SECONDS must be a positive whole number of seconds, not {value!r}")
    return seconds


def _holder_is_dead(holder):
    """True only when the holder ran on this host and its process no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


class _LeaseLock:
    def __init__(self, using, seconds):
        self.using = using
        self.lease = timedelta(seconds=seconds)
        self.holder = holder_name()

    def _leases(self):
        return RunLease.objects.using(self.using).filter(name=LOCK_NAME)

    def _take(self, **condition):
        """One atomic UPDATE: of two runs racing for the same stale lease only one wins."""
        now = timezone.now()
        return self._leases().filter(**condition).update(holder=self.holder, acquired_at=now, expires_at=now + self.lease)

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
        if self._take(expires_at__lt=now):  # its holder stopped renewing it
            return
        lease = self._leases().first()
        if lease is not None and _holder_is_dead(lease.holder) and self._take(holder=lease.holder):
            return
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
def run_lock(using="default", lease_seconds=None):
    """Hold the cluster-wide logout lock for the block, or raise LockHeld at once (never waits)."""
    lock = _LeaseLock(using, lease_seconds or configured_lease_seconds())
    lock.acquire()
    try:
        yield lock
    except BaseException:
        # Keep the original error visible even if releasing fails too (e.g. the database went
        # away: the lease then ends with its expiry, or at once for a run on the same host).
        with suppress(DatabaseError):
            lock.release()
        raise
    lock.release()

