from django.db import models


class LogoutRun(models.Model):
    """One real (not dry) run of logout_all_users: what it did, and the logout cutoff it set.

    The latest successful run's ``started_at`` is the cutoff the middleware enforces: any
    authenticated session that began before it is ended at its next request, except the
    sessions of ``kept_user_ids`` (and of staff when ``keep_staff``).
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "running"
        SUCCESS = "success", "success"
        FAILED = "failed", "failed"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    host = models.CharField(max_length=255)
    engine = models.CharField(max_length=255, help_text="Session engine the run purged")
    deleted_active = models.PositiveBigIntegerField(default=0)
    deleted_expired = models.PositiveBigIntegerField(default=0)
    kept_sessions = models.PositiveBigIntegerField(default=0)
    keep_staff = models.BooleanField(default=False)
    kept_usernames = models.JSONField(default=list, blank=True)
    kept_user_ids = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["outcome", "-started_at"], name="logoutrun_outcome_started")]

    def __str__(self):
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.host} {self.outcome}"


class RunLease(models.Model):
    """The cluster-wide lock on databases without advisory locks (SQLite): a row per lock name.

    Whoever inserts the row (or takes over one whose lease expired) holds the lock; a crashed run
    blocks others only until ``expires_at``. PostgreSQL uses pg_try_advisory_lock instead.
    """

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=255)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
