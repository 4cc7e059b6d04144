"""Session storage cleanup by the site itself, for a schedule with no scheduler (`--scheduler none`).

With no scheduled job (a free PythonAnywhere account), the clock cutoff still logs everyone out at
the scheduled time, but nothing would delete stored sessions. So the site does, in small turns:

- Interval: at most one turn per CLEANUP_INTERVAL (10 minutes) for the whole site. The turn is
  claimed with cache.add, which is atomic on a shared cache (Redis, memcached, the database
  cache); with the default per-process locmem cache, once per interval per process.
- Bound: at most CLEANUP_BATCH (2,000) sessions per turn, so up to 288,000 a day; expired ones
  first, then sessions that began before a cutoff in force (rows last saved before it: its moment
  + SESSION_COOKIE_AGE > expire_date), sparing what that cutoff keeps (staff, excluded users,
  remembered logins).
- Requests that do not run it pay nothing measurable: only a signed-in request may notice that a
  turn could be due, and then at most once per CHECK_SECONDS (60) per process (a comparison with
  the process clock before that; anonymous requests never look). The turn itself runs after the
  response has been sent (request_finished), so no page waits for it.

In per-user time zone mode (students.zones) each zone's cutoff ends only the sessions of its users.

Engines: db and cached_db (rows, and cached_db's cache entries). cache: the cache expires its
entries itself. signed_cookies: nothing is stored. file: not cleaned here (use a scheduler).
Sessions that began before a cutoff but were saved since are ended at their user's next request
(the middleware deletes them then) or deleted when they expire.
"""
import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import router
from django.utils import timezone

from students import clock, schedule_store, zones
from students.engines import detect_engine
from students.models import LogoutSchedule
from students.purge import Counts, delete_sessions
from students.purge.remembered import kept_among
from students.selection import Decoder, KeepRule, user_id_of

logger = logging.getLogger(__name__)

CLEANUP_INTERVAL = timedelta(minutes=10)
CLEANUP_BATCH = 2_000
CHECK_SECONDS = 60
CLAIM_KEY = "students:cleanup_claim"
CURSOR_KEY = "students:cleanup_cursor"

_next_check = 0.0            # time.monotonic() before which this process does not even look
_due = threading.local()     # set by the middleware, read after the response by run_if_due


def note_signed_in_request():
    """Middleware hook (signed-in requests only): mark a turn as due after this response, at most
    once per CHECK_SECONDS per process, when the schedule says no scheduler cleans up."""
    global _next_check
    if time.monotonic() < _next_check:
        return
    _next_check = time.monotonic() + CHECK_SECONDS
    schedule = schedule_store.recorded_schedule()
    _due.flag = schedule is not None and schedule.scheduler == LogoutSchedule.Scheduler.NONE


def run_if_due(sender=None, **kwargs):
    """request_finished receiver: run a turn if this request was marked. Never raises."""
    if not getattr(_due, "flag", False):
        return
    _due.flag = False
    try:
        take_turn()
    except Exception:  # a failed cleanup must not break the site; the next turn tries again
        logger.exception("Site cleanup of sessions failed")


def take_turn(now=None):
    """Claim this interval's turn for the whole site and clean up; None when another had it."""
    if not cache.add(CLAIM_KEY, time.time(), timeout=CLEANUP_INTERVAL.total_seconds()):
        return None
    return clean_up(now)


def clean_up(now=None, batch=None):
    """Delete at most `batch` (CLEANUP_BATCH) expired and cut-off sessions; return the Counts."""
    batch = batch or CLEANUP_BATCH
    now = now or timezone.now()
    engine = detect_engine()
    counts = Counts()
    if engine.kind in ("db", "cached_db"):
        model = engine.store_class.get_model_class()
        sessions = model._default_manager.using(router.db_for_read(model))
        expired = list(sessions.filter(expire_date__lte=now).order_by("expire_date")
                       .values_list("session_key", flat=True)[:batch])
        counts.expired = len(expired)
        doomed = _cut_off_keys(engine, sessions, now, batch - len(expired)) if len(expired) < batch else []
        delete_sessions(engine, expired, doomed, counts)
    LogoutSchedule.objects.current().update(last_cleanup_at=now)
    logger.info("Site cleanup: deleted %d expired and %d cut-off session(s) (engine %s)",
                counts.deleted_expired, counts.deleted_active, engine.kind)
    return counts


def _cut_off_keys(engine, sessions, now, room):
    """Up to `room` keys of live rows last saved before a cutoff in force and not kept by it.
    Rows a cutoff keeps stay; a cursor (in the cache) moves past them so later turns progress."""
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    decoder = Decoder(engine.store_class)
    staff_ids = None
    keys = []
    for c, rule in _cutoffs_and_rules(now):
        if room <= 0:
            break
        saved_before = datetime.fromtimestamp(c.at, UTC) + age
        cursor = cache.get(CURSOR_KEY)
        after = datetime.fromisoformat(cursor["after"]) if cursor and cursor["at"] == c.at else now
        keeps = rule.keeps_anyone or rule.keep_staff  # staff ids are read below, only when needed
        fields = ("session_key", "expire_date", "session_data") if keeps else ("session_key", "expire_date")
        rows = list(sessions.filter(expire_date__gt=after, expire_date__lt=saved_before)
                    .order_by("expire_date").values_list(*fields)[:room])
        if keeps and staff_ids is None and c.keep_staff:
            staff_ids = frozenset(str(pk) for pk in get_user_model()._default_manager.filter(is_staff=True)
                                  .values_list("pk", flat=True))
        rule = replace(rule, staff_ids=staff_ids or frozenset())
        doomed = [row[0] for row in rows if not keeps or _doomed(row[2], rule, decoder)]
        if c.keep_remembered and doomed:  # remembered logins this cutoff keeps (checked as the purge does)
            remembered = kept_among(engine, doomed, now)
            doomed = [key for key in doomed if key not in remembered]
        keys += doomed
        full = len(rows) == room
        if full:
            cache.set(CURSOR_KEY, {"at": c.at, "after": rows[-1][1].isoformat()}, None)
        else:
            cache.delete(CURSOR_KEY)
        room -= len(rows)
    return keys


def _cutoffs_and_rules(now):
    """Each cutoff the cleanup enforces, with the keep rule of the sessions it ends. In per-user time
    zone mode each zone's own cutoff ends only the sessions of that zone's users (zones.restricted)."""
    def rule_of(c):
        return KeepRule(user_ids=c.kept_user_ids, keep_staff=c.keep_staff)

    found = [(c, rule_of(c)) for c in clock.cutoffs_in_force(now)]
    schedule = schedule_store.recorded_schedule()
    if schedule is not None and schedule.per_user_zones:
        found += [(c, zones.restricted(rule_of(c), datetime.fromtimestamp(c.at, UTC), [c.zone], schedule))
                  for c in schedule_store.zone_cutoffs(schedule, now)]
    return found


def _doomed(data, rule, decoder):
    """Does this cut-off session go? Peek (no signature check) to find whose it is; another zone's
    session is kept as stored (selection.KeepRule.keeps_unread); a kept user only if signed."""
    session = decoder.peek(data)
    user_id = user_id_of(session)
    if rule.keeps_unread(session, user_id):
        return False
    if not rule.keeps(user_id):
        return True
    return not rule.keeps(user_id_of(decoder.decode(data)))


def last_cleanup():
    """When the site last cleaned session storage itself (aware datetime), or None."""
    return LogoutSchedule.objects.current().values_list("last_cleanup_at", flat=True).first()
