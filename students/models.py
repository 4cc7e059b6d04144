from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce


class LogoutRunQuerySet(models.QuerySet):
    """The runs the logout reads back: `LogoutRun.objects.successful().site_wide()` and the like."""

    def successful(self):
        return self.filter(outcome=LogoutRun.Outcome.SUCCESS)

    def site_wide(self):
        """Runs that set a site-wide cutoff: not per-user time zone runs (students.zones), which end
        only their zones' sessions, nor runs for named users alone."""
        return self.filter(zones__isnull=True).excluding_named_users()

    def for_named_users(self):
        """Runs that logged out named users alone (`logout_all_users --user`, the admin's action, "Sign
        out my other sessions": students.session_index); they stand for no scheduled time."""
        return self.filter(only_user_ids__isnull=False)

    def excluding_named_users(self):
        return self.filter(only_user_ids__isnull=True)

    def latest_cutoff_first(self):
        """By cutoff (stands_for, else started_at), latest first: a late scheduled run stands for an
        earlier instant than its start, so the newest run is not always the latest cutoff."""
        return self.order_by(Coalesce("stands_for", "started_at").desc(), "-started_at")


class LogoutScheduleQuerySet(models.QuerySet):
    def current(self):
        """The schedule's one row (LogoutSchedule.ROW_PK), as a queryset: .first(), .update(),
        .values_list() and select_for_update() all apply."""
        return self.filter(pk=LogoutSchedule.ROW_PK)


class LogoutRun(models.Model):
    """One real (not dry) run of logout_all_users: what it did, and the logout cutoff it set.

    The latest successful run's cutoff (``stands_for`` for a scheduled run, else ``started_at``)
    is the cutoff the middleware enforces: any authenticated session that began before it is
    ended at its next request, except the sessions of ``kept_user_ids`` (and of staff when
    ``keep_staff``, and "keep me signed in" sessions when ``keep_remembered``).
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "running"
        SUCCESS = "success", "success"
        FAILED = "failed", "failed"

    started_at = models.DateTimeField(db_index=True)
    # A --scheduled run stands for the scheduled instant it was fired for: that instant, not its
    # start, is its cutoff (a late run never logs out a session that began after it). Null: manual.
    stands_for = models.DateTimeField(null=True, blank=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    host = models.CharField(max_length=255)
    engine = models.CharField(max_length=255, help_text="Session engine the run purged")
    deleted_active = models.PositiveBigIntegerField(default=0)
    deleted_expired = models.PositiveBigIntegerField(default=0)
    kept_sessions = models.PositiveBigIntegerField(default=0)
    keep_staff = models.BooleanField(default=False)
    # --keep-remembered: the run kept "keep me signed in" sessions, so its cutoff keeps them too.
    keep_remembered = models.BooleanField(default=False)
    kept_usernames = models.JSONField(default=list, blank=True)
    kept_user_ids = models.JSONField(default=list, blank=True)
    # A --scheduled run in per-user time zone mode: {zone: ISO instant} of the zones it logged out
    # (students.zones). It ends nobody else, so it sets no site-wide cutoff. Null: any other run.
    zones = models.JSONField(null=True, blank=True)
    # `logout_all_users --user` (or the user admin's action, or a user's "Sign out my other sessions":
    # students.session_index): the run logged out these users alone, so its cutoff ends only their
    # sessions (students.cutoff.UserCutoffs) and it is not the nightly run. Null: any other run.
    only_user_ids = models.JSONField(null=True, blank=True)
    only_usernames = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)

    objects = LogoutRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["outcome", "-started_at"], name="logoutrun_outcome_started")]

    def __str__(self):
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.host} {self.outcome}"

    @property
    def cutoff_at(self):
        return self.stands_for or self.started_at


class LogoutSchedule(models.Model):
    """The nightly logout's schedule as the site knows it (one row, written by `manage.py
    logout_schedule`; students.clock reads it). Every scheduled instant after ``recorded_at`` is a
    clock cutoff with this schedule's keep rules, whether or not a job ran. ``previous_cutoffs``
    are the cutoffs in force just before it was recorded, changed or cleared, so recording never
    forgives one: [{"at": ISO, "keep_staff": bool, "keep_remembered": bool, "kept_user_ids": [str, ...]}, ...].
    Empty ``times``: no schedule (cleared); the previous cutoffs still hold.
    """

    ROW_PK = 1  # the one row (LogoutSchedule.objects.current())

    class Scheduler(models.TextChoices):
        CRON = "cron", "cron"
        SYSTEMD = "systemd", "systemd"
        PYTHONANYWHERE = "pythonanywhere", "pythonanywhere"
        NONE = "none", "none (the site cleans up itself)"

    times = models.JSONField(default=list, help_text='Local "HH:MM" times, the main one first')
    timezone = models.CharField(max_length=64, blank=True)
    scheduler = models.CharField(max_length=16, choices=Scheduler.choices, default=Scheduler.CRON)
    keep_staff = models.BooleanField(default=False)
    excluded_usernames = models.JSONField(default=list, blank=True)
    kept_user_ids = models.JSONField(default=list, blank=True)
    recorded_at = models.DateTimeField()
    previous_cutoffs = models.JSONField(default=list, blank=True)
    # With scheduler "none", when the site last cleaned session storage itself (students.cleanup).
    last_cleanup_at = models.DateTimeField(null=True, blank=True)
    # When a scheduled firing last asked whether a run was due (`logout_all_users --scheduled --check-due`,
    # due or not): the health check's witness that an hourly scheduler still fires (students.health).
    last_fired_at = models.DateTimeField(null=True, blank=True)
    # Minutes before each scheduled time during which signed-in pages warn of it (students.warning); 0: off.
    warn_minutes = models.PositiveSmallIntegerField(default=0)
    # The login page offers "Keep me signed in", and the clock cutoff keeps such sessions (students.remember).
    keep_remembered = models.BooleanField(default=False)
    # Each user is logged out at these local times in their own zone (UserTimeZone; students.zones).
    per_user_zones = models.BooleanField(default=False)
    # OWASP ASVS 7.3.2: a session is logged out at its first request more than this many hours after its
    # login, remembered ones included (students.cutoff.max_age_cutoff); 0: no maximum.
    max_session_age_hours = models.PositiveSmallIntegerField(default=0)

    objects = LogoutScheduleQuerySet.as_manager()

    def __str__(self):
        return f"{', '.join(self.times) or 'no schedule'} {self.timezone} ({self.scheduler})"


class RememberedLogin(models.Model):
    """A "keep me signed in" login (students.remember), written by the server at login: the only
    proof the purge accepts that a session was remembered. A session that claims it without a row,
    or whose row names another user, is not kept. Rows whose session is gone are removed by the
    next purge."""

    session_key = models.CharField(max_length=40, primary_key=True)
    user_id = models.CharField(max_length=255, help_text="str(pk), as Django stores it in the session")
    logged_in_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True, help_text="login + SESSION_COOKIE_AGE: fixed, not sliding")

    def __str__(self):
        return f"{self.user_id} remembered until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class UserTimeZone(models.Model):
    """A user's own time zone (students.zones), for the per-user logout mode. Stored on the user, not
    only in the session (the logout wipes sessions); copied into each session at login, so reading
    it costs no query per request. A change waits for the next logout in the zone in effect
    (``next_zone`` from ``next_zone_from``), so nobody dodges a logout by switching zones."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="logout_time_zone")
    zone = models.CharField(max_length=64, blank=True, help_text="IANA name; blank: the schedule's zone")
    next_zone = models.CharField(max_length=64, blank=True)
    next_zone_from = models.DateTimeField(null=True, blank=True,
                                          help_text="When next_zone takes over: the next logout in the zone")

    def zone_at(self, moment):
        """The zone in effect at `moment` ("" = the schedule's)."""
        if self.next_zone_from is not None and moment >= self.next_zone_from:
            return self.next_zone
        return self.zone

    def __str__(self):
        pending = f" ({self.next_zone} from {self.next_zone_from:%Y-%m-%d %H:%M})" if self.next_zone_from else ""
        return f"{self.user_id}: {self.zone or 'schedule zone'}{pending}"


class RunLease(models.Model):
    """The cluster-wide lock (students.lock), on every database: a row per lock name.

    Whoever inserts the row (or takes over one whose lease expired) holds the lock; a crashed run
    blocks others only until ``expires_at`` (on its own host: until its process is seen gone).
    """

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=255)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class SessionOwner(models.Model):
    """Whose session is it: one row per session stored on the server (db, cached_db, cache, file),
    written by the server at login (students.session_index), moved when Django gives the session a
    new key, removed at logout and by the purge that deletes the session. Signed-cookie sessions
    have none (nothing is stored on the server; the cutoff ends them).

    A row only says where to look: it never keeps a session alive. A session the rules would delete
    is deleted whatever its row says (a forged or stale row keeps nothing), and a session with no row
    (from before the index, or from a login that bypassed it) is decoded as before.
    """

    session_key = models.CharField(max_length=40, primary_key=True)
    user_id = models.CharField(max_length=255, db_index=True, help_text="str(pk), as Django stores it in the session")
    zone = models.CharField(max_length=64, blank=True,
                            help_text="The session's zone stamp at login (selection.ZONE_KEY); blank: the schedule's")
    logged_in_at = models.DateTimeField(db_index=True)
    user_agent = models.CharField(max_length=300, blank=True, help_text="As the browser sent it at login, cut to 300")
    ip_address = models.GenericIPAddressField(null=True, blank=True,
                                              help_text="Only when the LOGOUT_SESSIONS_STORE_IP setting asks for it")

    class Meta:
        # The per-user time zone run finds a zone's sessions by their stamp.
        indexes = [models.Index(fields=["zone"], name="sessionowner_zone")]

    def __str__(self):
        return f"{self.user_id} since {self.logged_in_at:%Y-%m-%d %H:%M:%S}"
