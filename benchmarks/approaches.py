"""The approaches: each engine's floor, the two peers and `logout_all_users` in its variants, each run
in a child process of its own (`python -m benchmarks.approaches APPROACH LIMIT`) so that one approach's
memory never shows up in another's figure. The child prints one JSON line with its figures.
"""
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.fill import SESSION_COOKIE_AGE, ZONE_HOUR_ZONE, zone_hour_user_ids
from benchmarks.stores import INDEX_TABLE, SESSION_KEY_GLOB, glob_escape, is_session_key, session_cache_head

APPROACHES = ["floor", "naive", "per_session", "ours", "ours_keep_staff", "ours_keep_remembered", "ours_late",
              "ours_zone_hour", "floor_zone_keys"]
TABLE_ONLY = {"naive", "per_session"}  # the peers that need a session table (db and cached_db only)
FLOOR_BATCH = 1000  # keys per UNLINK in the Redis floors


def peak_rss_kb(workers):
    """VmHWM, the peak resident set of this process since it was exec'd, plus the most private memory
    any process it forked held (`workers`: the sorter or the checker of remembered sessions), counted
    as if both peaked at once: an upper bound. A forked worker's resident set also counts every page
    it still shares with this process, which VmHWM counts already; its private pages are what it adds."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) + workers.peak_kb
    raise RuntimeError("no VmHWM in /proc/self/status")


class ForkedWorkers(threading.Thread):
    """Samples, every 20 ms, the private memory (Private_Clean + Private_Dirty in smaps_rollup) of each
    process this one forked, keeping the largest seen (peak_kb). A worker that lives under 20 ms may
    go unseen; the purge's workers live for a whole sort or check (about a second at 1M sessions)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb = 0

    def run(self):
        while True:
            for pid in self._children():
                try:
                    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:  # it ended between the listing and the read
                    continue
                private = sum(int(line.split()[1]) for line in text.splitlines()
                              if line.startswith(("Private_Clean:", "Private_Dirty:")))
                self.peak_kb = max(self.peak_kb, private)
            time.sleep(0.02)

    @staticmethod
    def _children():
        for task in Path("/proc/self/task").iterdir():
            try:
                yield from (task / "children").read_text().split()
            except OSError:
                continue


def run_child(approach, limit):
    """Run one approach in this fresh process and print one JSON line with its figures."""
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.sessions.models import Session
    from django.core.management import call_command, get_commands, load_command_class
    from django.db import connection

    # Connect and import before the clock starts: every approach gets the same warm start.
    connection.ensure_connection()
    if approach.startswith("ours"):
        load_command_class(get_commands()["logout_all_users"], "logout_all_users")
    if approach == "ours_late":
        record_late_schedule()
    if approach in ("ours_zone_hour", "floor_zone_keys"):
        record_zone_hour()
    engine = import_module(settings.SESSION_ENGINE)
    floor = floor_for(settings.SESSION_ENGINE.rsplit(".", 1)[-1]) if approach == "floor" else None
    if approach == "floor_zone_keys":
        floor = zone_keys_floor_for(settings.SESSION_ENGINE.rsplit(".", 1)[-1])
    out, processed = io.StringIO(), None
    workers = ForkedWorkers()
    workers.start()

    start = time.perf_counter()
    if approach in ("floor", "floor_zone_keys"):
        floor()
    elif approach == "naive":
        Session.objects.all().delete()
        call_command("clearsessions", stdout=out)
    elif approach == "per_session":
        keys = Session.objects.values_list("session_key", flat=True)
        keys = list(keys[:limit] if limit else keys)
        for key in keys:
            engine.SessionStore(key).delete()
        processed = len(keys)
    elif approach == "ours":
        call_command("logout_all_users", stdout=out, stderr=out)
    elif approach == "ours_keep_staff":
        call_command("logout_all_users", "--keep-staff", stdout=out, stderr=out)
    elif approach == "ours_keep_remembered":
        call_command("logout_all_users", "--keep-remembered", stdout=out, stderr=out)
    elif approach in ("ours_late", "ours_zone_hour"):
        call_command("logout_all_users", "--scheduled", stdout=out, stderr=out)
    seconds = time.perf_counter() - start

    print(json.dumps({"seconds": seconds, "peak_rss_kb": peak_rss_kb(workers), "processed": processed,
                      "output": out.getvalue().strip().splitlines()[-2:]}))


def floor_for(engine):
    """The cheapest correct purge of the engine's store, nothing read or decoded, prepared (connections
    open, names resolved) so that calling it is all the clock sees."""
    from django.conf import settings
    from django.db import connection

    def unlink_all(client, names):
        """UNLINK in batches of FLOOR_BATCH, ten batches per round trip."""
        pipe, batch = client.pipeline(transaction=False), []
        for name in names:
            batch.append(name)
            if len(batch) == FLOOR_BATCH:
                pipe.unlink(*batch)
                batch = []
                if len(pipe) == 10:
                    pipe.execute()
        if batch:
            pipe.unlink(*batch)
        pipe.execute()

    def empty_index():
        with connection.cursor() as cur:
            cur.execute(f"DELETE FROM {INDEX_TABLE}")

    if engine == "db":
        def floor():
            with connection.cursor() as cur:
                cur.execute("DELETE FROM django_session")
                cur.execute(f"DELETE FROM {INDEX_TABLE}")
    elif engine in ("cache", "cached_db"):
        import redis

        client = redis.Redis.from_url(os.environ["CACHE_URL"])
        client.ping()  # connected before the clock starts
        head = session_cache_head()
        if engine == "cache":
            def floor():
                unlink_all(client, client.scan_iter(match=glob_escape(head) + SESSION_KEY_GLOB, count=FLOOR_BATCH))
                empty_index()
        else:
            def floor():
                with connection.cursor() as cur:
                    cur.execute("DELETE FROM django_session RETURNING session_key")
                    unlink_all(client, (head + key for rows in iter(lambda: cur.fetchmany(FLOOR_BATCH), [])
                                        for (key,) in rows))
                empty_index()
    elif engine == "file":
        folder, prefix = settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME

        def floor():
            with os.scandir(folder) as entries:
                for entry in entries:
                    if (entry.name.startswith(prefix) and is_session_key(entry.name[len(prefix):])
                            and entry.is_file(follow_symlinks=False)):
                        os.unlink(entry.path)
            empty_index()
    else:
        raise ValueError(f"no floor for session engine {engine!r}")
    return floor


def zone_keys_floor_for(engine):
    """ours_zone_hour's floor: delete exactly what it must, by key, the due users' keys read from the
    index before the clock starts: their sessions and rows (and cached_db's cache entries), then the
    expired sessions (found by the store's own expiry: expire_date, or a file's mtime) and their rows."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from students.models import SessionOwner, UserTimeZone

    due_users = [str(uid) for uid in UserTimeZone.objects.filter(zone=ZONE_HOUR_ZONE).values_list("user_id", flat=True)]
    keys = []
    for start in range(0, len(due_users), 500):
        keys += SessionOwner.objects.filter(user_id__in=due_users[start:start + 500]).values_list(
            "session_key", flat=True)
    postgres = connection.vendor == "postgresql"

    def delete_keys(cur, table, column, some):
        if postgres:
            cur.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", [list(some)])
            return
        for start in range(0, len(some), 500):
            part = some[start:start + 500]
            cur.execute(f"DELETE FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(part))})", part)

    if engine in ("db", "cached_db"):
        client = None
        if engine == "cached_db":
            import redis

            client = redis.Redis.from_url(os.environ["CACHE_URL"])
            client.ping()
            head = session_cache_head()

        def floor():
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            with transaction.atomic(), connection.cursor() as cur:
                delete_keys(cur, "django_session", "session_key", keys)
                delete_keys(cur, INDEX_TABLE, "session_key", keys)
                cur.execute("DELETE FROM django_session WHERE expire_date <= %s RETURNING session_key", [now])
                delete_keys(cur, INDEX_TABLE, "session_key", [key for (key,) in cur.fetchall()])
            if client is not None:
                pipe = client.pipeline(transaction=False)
                for start in range(0, len(keys), FLOOR_BATCH):
                    pipe.unlink(*[head + key for key in keys[start:start + FLOOR_BATCH]])
                pipe.execute()
        return floor
    if engine == "cache":
        import redis

        client = redis.Redis.from_url(os.environ["CACHE_URL"])
        client.ping()
        head = session_cache_head()

        def floor():
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(keys), FLOOR_BATCH):
                pipe.unlink(*[head + key for key in keys[start:start + FLOOR_BATCH]])
            pipe.execute()
            with transaction.atomic(), connection.cursor() as cur:
                delete_keys(cur, INDEX_TABLE, "session_key", keys)
        return floor
    if engine == "file":
        folder, prefix = settings.SESSION_FILE_PATH, settings.SESSION_COOKIE_NAME

        def floor():
            gone = list(keys)
            for key in keys:
                os.unlink(os.path.join(folder, prefix + key))
            due, now = set(keys), time.time()
            with os.scandir(folder) as entries:  # the expired ones: only their mtime says so
                for entry in entries:
                    key = entry.name[len(prefix):]
                    if (entry.name.startswith(prefix) and is_session_key(key) and key not in due
                            and entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime + SESSION_COOKIE_AGE <= now):
                        os.unlink(entry.path)
                        gone.append(key)
            with transaction.atomic(), connection.cursor() as cur:
                delete_keys(cur, INDEX_TABLE, "session_key", gone)
        return floor
    raise ValueError(f"no floor for session engine {engine!r}")


def record_late_schedule(hours_late=6):
    """A schedule recorded two days ago whose latest time was `hours_late` ago, and no run standing
    for it yet: what a scheduled run fired that late finds."""
    from django.utils import timezone

    from students.models import LogoutRun, LogoutSchedule

    now = timezone.now()
    LogoutRun.objects.filter(stands_for__isnull=False).delete()
    # per_user_zones off: on PostgreSQL the row outlives a refill, and ours_zone_hour turns it on.
    LogoutSchedule.objects.update_or_create(pk=1, defaults=dict(
        times=[f"{now - dt.timedelta(hours=hours_late):%H:%M}"], timezone="UTC", scheduler="cron",
        recorded_at=now - dt.timedelta(days=2), previous_cutoffs=[], per_user_zones=False))


def record_zone_hour():
    """What an hourly run in per-user time zone mode finds: a per-user schedule recorded two days ago
    (zone UTC) whose time is ZONE_HOUR_ZONE's wall time an hour ago, every tenth student in that zone,
    and a successful run that already stands for UTC's latest instant of that time, so only
    ZONE_HOUR_ZONE is due. Runs left by other approaches go (a manual run would cover every zone)."""
    from zoneinfo import ZoneInfo

    from django.contrib.auth.models import User
    from django.utils import timezone

    from students.models import LogoutRun, LogoutSchedule, UserTimeZone
    from students.schedule_store import stored_schedule

    now = timezone.now()
    LogoutRun.objects.all().delete()
    UserTimeZone.objects.all().delete()
    students = User.objects.filter(is_staff=False).values_list("id", flat=True)
    UserTimeZone.objects.bulk_create((UserTimeZone(user_id=uid, zone=ZONE_HOUR_ZONE)
                                      for uid in zone_hour_user_ids(students)), batch_size=5000)
    local = now.astimezone(ZoneInfo(ZONE_HOUR_ZONE)) - dt.timedelta(hours=1)
    LogoutSchedule.objects.update_or_create(pk=1, defaults=dict(
        times=[f"{local:%H:%M}"], timezone="UTC", scheduler="cron", recorded_at=now - dt.timedelta(days=2),
        previous_cutoffs=[], per_user_zones=True))
    utc_done = stored_schedule().latest_instant(now, ZoneInfo("UTC"))
    LogoutRun.objects.create(started_at=utc_done, stands_for=utc_done, finished_at=utc_done, host="bench",
                             engine="bench", zones={"UTC": utc_done.isoformat()},
                             outcome=LogoutRun.Outcome.SUCCESS)


def spawn_child(approach, limit, profile=None):
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    cmd += ["-m", "benchmarks.approaches", approach, str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"{approach} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(store, fill, approaches, runs, per_session_runs=1, per_session_limit=0, profile_dir=None, label=""):
    """Each approach `runs` times (per_session: per_session_runs), on an identical refill each time, in
    its own child; after each run, what is left is judged against the fill. Progress goes to stderr.
    Returns {approach: figures}, the figures render() and --json show."""
    results = {}
    for name in approaches:
        limit = per_session_limit if name == "per_session" else 0
        r = results[name] = {"times": [], "rss": [], "wrong": []}
        for i in range(per_session_runs if name == "per_session" else runs):
            store.refill(fill)
            profile = os.path.join(profile_dir, f"{label}-{name}-{i}.prof") if profile_dir else None
            res = spawn_child(name, limit, profile)
            left = store.left()
            seconds = res["seconds"]
            extrapolated = res["processed"] is not None and res["processed"] < fill.n
            if extrapolated:
                r.update(extrapolated=True, processed=res["processed"], sample_seconds=seconds)
                seconds = seconds * fill.n / res["processed"]
            wrong = [] if extrapolated else fill.judge(name, left)
            r["times"].append(seconds)
            r["rss"].append(res["peak_rss_kb"])
            r["wrong"] += [f"run {i + 1}: {w}" for w in wrong]
            keys = None if left["cache_keys"] is None else len(left["cache_keys"])
            r.update(left=len(left["sessions"]), keys_left=keys, rows_left=len(left["rows"]),
                     unrelated_missing=len(left["unrelated_missing"]),
                     unrelated_planted=left["unrelated_planted"], ok=not r["wrong"], output=res["output"])
            print(f"{name} run {i + 1}: {seconds:.3f} s, peak RSS {res['peak_rss_kb'] / 1024:.0f} MB, "
                  f"{len(left['sessions'])} sessions left, {keys} cache keys left, unrelated missing "
                  f"{left['unrelated_missing'] or 'none'} {'; '.join(wrong)} {res['output']}", file=sys.stderr)
        r["median"] = statistics.median(r["times"])
        r["rss_mb"] = max(r["rss"]) / 1024
    return results


if __name__ == "__main__":  # the child side of spawn_child: APPROACH LIMIT
    run_child(sys.argv[1], int(sys.argv[2]))
