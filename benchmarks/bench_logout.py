#!/usr/bin/env python3
"""Time `logout_all_users` against the raw-SQL floor and two common peers, side by side.

For one backend (sqlite, postgres, or cached_db on PostgreSQL + Redis) it fills django_session with
N sessions in a realistic mix (live students, live staff, anonymous, expired; data encoded by Django's
own SessionStore), then runs each approach on an identical refill, each in its own child process so one
approach's memory never shows up in another's figure:

  floor            one raw SQL `DELETE FROM django_session`
  naive            Session.objects.all().delete() then `clearsessions`
  per_session      SessionStore(key).delete() for every key (what ansible/awx's expire_sessions does);
                   with --per-session-limit it runs on the first K keys and the time is extrapolated
  ours             `logout_all_users`
  ours_keep_staff  `logout_all_users --keep-staff`
  ours_late        `logout_all_users --scheduled` fired 6 hours late (a recorded schedule whose latest
                   time was 6 h ago): it spares sessions that began after that time, so it pages
                   through the rows and decodes those saved since (about 6 h / 13 days of the fill)

It prints a table (median wall time, ratio to the floor, peak RSS of the child, sessions and cache keys
left) and the command that reproduces it; --doc writes the table into docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_logout.py --backend sqlite -n 1000000 --doc docs/benchmarks.md

PostgreSQL and Redis are started for the run (throw-away instances from tests/servers.py).
"""
import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

APPROACHES = ["floor", "naive", "per_session", "ours", "ours_keep_staff", "ours_late"]
SESSION_PREFIX = "django.contrib.sessions.cached_db"  # cached_db's cache key prefix
BENCH_PASSWORD = "bench-password-1"  # every generated user has it, so bench_site_up can log in
# The mix of a busy term-time site: most sessions belong to logged-in students, a few to staff,
# some are anonymous (language choice, messages), a fifth are expired and waiting for clearsessions.
MIX = [("staff", 0.005), ("student", 0.600), ("anonymous", 0.195), ("expired_user", 0.140),
       ("expired_anonymous", 0.060)]
ANONYMOUS_DATA = [{"django_language": "ga"}, {"django_language": "en-gb"},
                  {"_messages": '[["__json_message",0,20,"Please log in to see your statistics."]]'}]


# ---------------------------------------------------------------- environment and Django
def configure(backend, database_url, cache_url):
    """Point lcstats.settings at the benchmark's servers (must run before django.setup())."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "lcstats.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["CACHE_URL"] = cache_url
    os.environ["SESSION_ENGINE"] = "cached_db" if backend == "cached_db-redis" else "db"
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-secret-key-" + "x" * 40)
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")


def peak_rss_kb():
    """VmHWM, the peak resident set of this process since it was exec'd, plus the peak of the
    largest process it forked and waited for (--keep-staff's sorter on PostgreSQL), counted as if
    both peaked at once: an upper bound."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    raise RuntimeError("no VmHWM in /proc/self/status")


# ---------------------------------------------------------------- the fill
class Fill:
    """N sessions, generated once from a seed and loaded again, identically, before each approach."""

    def __init__(self, n, seed=1):
        self.n = n
        self.seed = seed
        self.counts = {kind: 0 for kind, _ in MIX}
        self.rows = []  # (session_key, session_data, expire_date as naive UTC datetime)

    def create_users(self):
        """One user per ten sessions; 1 in 500 is staff. Returns (student ids, staff ids)."""
        from django.contrib.auth.hashers import make_password
        from django.contrib.auth.models import User

        password = make_password(BENCH_PASSWORD)  # hashed once: PBKDF2 is slow on purpose
        n_users = max(10, self.n // 10)
        n_staff = max(2, n_users // 500)
        users = [User(username=f"student{i:07d}", password=password, is_staff=False)
                 for i in range(n_users - n_staff)]
        users += [User(username=f"staff{i:05d}", password=password, is_staff=True)
                  for i in range(n_staff)]
        User.objects.bulk_create(users, batch_size=5000)
        ids = dict(User.objects.values_list("id", "is_staff"))
        return [i for i, s in ids.items() if not s], [i for i, s in ids.items() if s], password

    def generate(self):
        """Encode one real session payload per user (signed by Django), then pick cheaply per row."""
        from django.conf import settings
        from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, BACKEND_SESSION_KEY
        from django.contrib.auth.models import User
        from importlib import import_module

        from students.cutoff import LOGIN_TIME_KEY

        students, staff, _ = self.create_users()
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        user_hash = User.objects.get(id=students[0]).get_session_auth_hash()  # same password for all

        login_time = time.time() - 86400  # students.cutoff stamps every login with this key

        def payload(uid):
            return {SESSION_KEY: str(uid), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user_hash, LOGIN_TIME_KEY: login_time}

        self.payloads = {uid: payload(uid) for uid in students + staff}
        # Django encodes `<payload>:<timestamp>:<signature>`. Encode each user's payload once, then give
        # every session its own timestamp and a real signature: unique, valid data at ~2 us a row.
        encoded = {uid: store.encode(data).split(":")[0] for uid, data in self.payloads.items()}
        anonymous = [(d, store.encode(d).split(":")[0]) for d in ANONYMOUS_DATA]
        sign = session_signer(store)
        rng = random.Random(self.seed)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        cumulative, total = [], 0.0
        for kind, share in MIX:
            total += share
            cumulative.append((total, kind))
        self.cache_entries = []  # (session_key, decoded data) for live sessions: what cached_db caches
        for _ in range(self.n):
            r = rng.random()
            kind = next((k for c, k in cumulative if r < c), cumulative[-1][1])
            self.counts[kind] += 1
            key = "%032x" % rng.getrandbits(128)
            if kind in ("student", "expired_user"):
                uid = rng.choice(students)
                data, text = self.payloads[uid], encoded[uid]
            elif kind == "staff":
                uid = rng.choice(staff)
                data, text = self.payloads[uid], encoded[uid]
            else:
                data, text = rng.choice(anonymous)
            if kind.startswith("expired"):
                expire = now - dt.timedelta(seconds=rng.uniform(60, 30 * 86400))
            else:
                expire = now + dt.timedelta(seconds=rng.uniform(86400, 14 * 86400))
                self.cache_entries.append((key, data))
            # Saved when it was last modified: 14 days (SESSION_COOKIE_AGE) before it expires.
            self.rows.append((key, sign(text, expire.timestamp() - 14 * 86400), expire))
        sample = self.rows[0]
        if store.decode(sample[1]) == {}:
            raise RuntimeError("generated session data does not decode: Django's signing format changed?")

    def expected_left(self, approach):
        return self.counts["staff"] if approach == "ours_keep_staff" else 0

    def correct(self, approach, left, keys):
        """Sessions left as expected; for ours, no cache key left but those of kept sessions.
        ours_late spares anonymous sessions saved since the time it stands for (every login in the
        fill is a day old, so no signed-in one): at most the live anonymous ones, none signed in."""
        if approach == "ours_late":
            return left <= self.counts["anonymous"] and signed_in_left() == 0
        if left != self.expected_left(approach):
            return False
        return keys is None or not approach.startswith("ours") or keys <= self.expected_left(approach)


def session_signer(store):
    """sign(payload, when) -> the string signing.dumps() would have made at `when` (epoch seconds).

    Same algorithm as django.core.signing (TimestampSigner, salted HMAC), with the HMAC key derived
    once instead of per call; Fill.generate() checks the result with SessionStore.decode()."""
    import hashlib
    import hmac

    from django.conf import settings
    from django.core import signing

    signer = signing.TimestampSigner(salt=store.key_salt)
    hasher = getattr(hashlib, signer.algorithm)
    key = hasher(f"{store.key_salt}signer{settings.SECRET_KEY}".encode()).digest()
    base = hmac.new(key, digestmod=hasher)

    def sign(payload, when):
        value = f"{payload}:{signing.b62_encode(int(when))}"
        mac = base.copy()
        mac.update(value.encode())
        return f"{value}:{signing.b64_encode(mac.digest()).decode()}"

    return sign


class SQLiteTarget:
    """Fill a template database once; each run copies it, so every approach sees the same file."""

    def __init__(self, workdir):
        self.path = Path(workdir) / "bench.sqlite3"
        self.template = Path(workdir) / "template.sqlite3"
        self.url = f"sqlite:///{self.path}"

    def load_once(self, fill):
        from django.db import connection, transaction

        # One transaction: in autocommit every row would be its own commit (and fsync).
        with transaction.atomic(), connection.cursor() as cur:
            cur.executemany("INSERT INTO django_session (session_key, session_data, expire_date) "
                            "VALUES (%s, %s, %s)",
                            ((k, d, e.isoformat(" ")) for k, d, e in fill.rows))
        connection.close()
        shutil.copyfile(self.path, self.template)

    def refill(self, fill):
        from django.db import connection

        connection.close()
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        shutil.copyfile(self.template, self.path)
        # Flush the copy now, or the first commit of the approach pays for writing the whole file.
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())


class PostgresTarget:
    """TRUNCATE + COPY FREEZE + ANALYZE + CHECKPOINT: the same table state before each approach."""

    def __init__(self, url):
        self.url = url

    def load_once(self, fill):
        buf = io.StringIO()
        for k, d, e in fill.rows:
            buf.write(f"{k}\t{d}\t{e.isoformat(' ')}+00\n")
        self.copy_data = buf.getvalue()
        self.refill(fill)

    def refill(self, fill):
        from django.db import connection, transaction

        # TRUNCATE and COPY FREEZE in one transaction: rows land already frozen, as after a VACUUM.
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("TRUNCATE django_session")
            raw = cur.cursor  # psycopg 3 cursor, for COPY
            with raw.copy("COPY django_session (session_key, session_data, expire_date) "
                          "FROM STDIN (FREEZE)") as cp:
                cp.write(self.copy_data)
        with connection.cursor() as cur:
            cur.execute("ANALYZE django_session")
            cur.execute("CHECKPOINT")  # so no approach pays for another's dirty pages
        connection.close()


def fill_cache(fill):
    """What cached_db holds on a live site: every live session, under its cache key."""
    from django.conf import settings
    from django.core.cache import caches

    cache = caches[settings.SESSION_CACHE_ALIAS]
    cache.clear()
    entries = fill.cache_entries
    for i in range(0, len(entries), 2000):
        cache.set_many({SESSION_PREFIX + k: d for k, d in entries[i:i + 2000]},
                       timeout=settings.SESSION_COOKIE_AGE)


def count_cache_keys(cache_url):
    import redis

    client = redis.Redis.from_url(cache_url)
    return sum(1 for _ in client.scan_iter(match=f"*{SESSION_PREFIX}*", count=10000))


def signed_in_left():
    """How many sessions left in the table belong to a user (decoded one by one: few are left)."""
    from django.contrib.sessions.models import Session

    from students.selection import user_id_of

    return sum(1 for s in Session.objects.iterator() if user_id_of(s.get_decoded()) is not None)


def count_sessions():
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM django_session")
        n = cur.fetchone()[0]
    connection.close()
    return n


# ---------------------------------------------------------------- the approaches (child side)
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
    engine = import_module(settings.SESSION_ENGINE)
    out, processed = io.StringIO(), None

    start = time.perf_counter()
    if approach == "floor":
        with connection.cursor() as cur:
            cur.execute("DELETE FROM django_session")
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
    elif approach == "ours_late":
        call_command("logout_all_users", "--scheduled", stdout=out, stderr=out)
    seconds = time.perf_counter() - start

    print(json.dumps({"seconds": seconds, "peak_rss_kb": peak_rss_kb(), "processed": processed,
                      "output": out.getvalue().strip().splitlines()[-2:]}))


def record_late_schedule(hours_late=6):
    """A schedule recorded two days ago whose latest time was `hours_late` ago, and no run standing
    for it yet: what a scheduled run fired that late finds."""
    from django.utils import timezone

    from students.models import LogoutRun, LogoutSchedule

    now = timezone.now()
    LogoutRun.objects.filter(stands_for__isnull=False).delete()
    LogoutSchedule.objects.update_or_create(pk=1, defaults=dict(
        times=[f"{now - dt.timedelta(hours=hours_late):%H:%M}"], timezone="UTC", scheduler="cron",
        recorded_at=now - dt.timedelta(days=2), previous_cutoffs=[]))


def spawn_child(approach, limit, profile=None):
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    cmd += [str(Path(__file__).resolve()), "--child", approach]
    if limit:
        cmd += ["--per-session-limit", str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"{approach} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- reporting
def versions(database_url, cache_url):
    import sqlite3

    import django

    info = {"Python": platform.python_version(), "Django": django.get_version(),
            "SQLite": sqlite3.sqlite_version}
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            info["PostgreSQL"] = cur.fetchone()[0]
    if cache_url.startswith("redis"):
        import redis

        info["Redis"] = redis.Redis.from_url(cache_url).info()["redis_version"]
    return info


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, load average {load} at the end of the run")


def render(args, fill, results, versions_info, command):
    floor = results.get("floor", {}).get("median")
    mix = f"N = {args.n:,} sessions: " + ", ".join(f"{v:,} {k}" for k, v in fill.counts.items())
    if args.backend == "cached_db-redis":
        mix += f"; the {len(fill.cache_entries):,} live ones also in Redis, as cached_db leaves them"
    lines = [
        f"Run {dt.datetime.now().astimezone().isoformat(timespec='seconds')} on {machine()}; "
        + ", ".join(f"{k} {v}" for k, v in versions_info.items()) + ".",
        "",
        mix + ".",
        "",
        "| approach | wall time (median) | runs | x floor | peak RSS | sessions left | cache keys left |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in APPROACHES:
        r = results.get(name)
        if not r:
            continue
        secs = f"{r['median']:.3f} s" + (" *" if r.get("extrapolated") else "")
        ratio = f"{r['median'] / floor:.2f}x" if floor else "-"
        left = "-" if r.get("extrapolated") else f"{r['left']:,}" + ("" if r["ok"] else " WRONG")
        keys = "-" if r["keys_left"] is None or r.get("extrapolated") else f"{r['keys_left']:,}"
        lines.append(f"| {name} | {secs} | {len(r['times'])} | {ratio} | {r['rss_mb']:.0f} MB | {left} | {keys} |")
    if any(r.get("extrapolated") for r in results.values()):
        r = results["per_session"]
        lines += ["", f"\\* per_session ran on the first {r['processed']:,} sessions "
                      f"({r['sample_seconds']:.1f} s) and its time is scaled to N."]
    lines += ["", "Reproduce:", "", "```", command, "```"]
    return "\n".join(lines)


def write_doc(path, backend, text):
    """Replace this backend's section (between markers) in the doc, keeping everything else."""
    path = Path(path)
    begin, end = f"<!-- bench:{backend} -->", f"<!-- /bench:{backend} -->"
    doc = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += f"\n## {backend}\n\n{block}\n"
    path.write_text(doc)


# ---------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "cached_db-redis"], default="sqlite")
    p.add_argument("-n", type=int, default=100_000, help="sessions to fill (default 100000)")
    p.add_argument("--runs", type=int, default=3, help="runs per approach; the median is reported")
    p.add_argument("--approaches", default=",".join(APPROACHES),
                   help=f"comma-separated subset of {','.join(APPROACHES)}")
    p.add_argument("--per-session-limit", type=int, default=0,
                   help="run per_session on the first K keys only and scale its time to N (0 = all)")
    p.add_argument("--per-session-runs", type=int, default=1, help="runs for the slow per_session peer")
    p.add_argument("--profile", metavar="DIR", help="also write a cProfile of each approach's child here")
    p.add_argument("--doc", help="write the table into this markdown file (e.g. docs/benchmarks.md)")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        return run_child(args.child, args.per_session_limit)

    approaches = [a.strip() for a in args.approaches.split(",") if a.strip()]
    unknown = set(approaches) - set(APPROACHES)
    if unknown or args.n < 1 or args.runs < 1:
        p.error(f"unknown approaches {sorted(unknown)}" if unknown else "-n and --runs must be >= 1")
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--json" and sys.argv[i:i + 1] != ["--json"]]
    command = " ".join([".venv/bin/python benchmarks/bench_logout.py", *map(shlex.quote, shown)])

    import servers  # tests/servers.py: the throw-away servers the tests use (not in children: it imports pytest)

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logout-"))
        if args.backend == "sqlite":
            target = SQLiteTarget(workdir)
            cache_url = "locmem://"
        else:
            target = PostgresTarget(stack.enter_context(servers.postgres()))
            cache_url = stack.enter_context(servers.redis()) if args.backend == "cached_db-redis" else "locmem://"
        configure(args.backend, target.url, cache_url)

        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        fill = Fill(args.n)
        t = time.perf_counter()
        fill.generate()
        target.load_once(fill)
        print(f"filled {args.n:,} sessions in {time.perf_counter() - t:.1f} s: {fill.counts}", file=sys.stderr)
        info = versions(target.url, cache_url)

        results = {}
        for name in approaches:
            limit = args.per_session_limit if name == "per_session" else 0
            runs = args.per_session_runs if name == "per_session" else args.runs
            r = results[name] = {"times": [], "rss": []}
            for i in range(runs):
                target.refill(fill)
                if args.backend == "cached_db-redis":
                    fill_cache(fill)
                profile = os.path.join(args.profile, f"{args.backend}-{name}-{i}.prof") if args.profile else None
                res = spawn_child(name, limit, profile)
                left = count_sessions()
                keys = count_cache_keys(cache_url) if args.backend == "cached_db-redis" else None
                seconds = res["seconds"]
                if res["processed"] is not None and res["processed"] < args.n:
                    r.update(extrapolated=True, processed=res["processed"], sample_seconds=seconds)
                    seconds = seconds * args.n / res["processed"]
                r["times"].append(seconds)
                r["rss"].append(res["peak_rss_kb"])
                r.update(left=left, keys_left=keys, ok=fill.correct(name, left, keys), output=res["output"])
                print(f"{name} run {i + 1}: {seconds:.3f} s, peak RSS {res['peak_rss_kb'] / 1024:.0f} MB, "
                      f"{left} sessions left, {keys} cache keys left {res['output']}", file=sys.stderr)
            r["median"] = statistics.median(r["times"])
            r["rss_mb"] = max(r["rss"]) / 1024
        from django.db import connection

        connection.close()

    text = render(args, fill, results, info, command)
    print(text)
    if args.doc:
        write_doc(args.doc, args.backend, text)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": args.backend, "n": args.n, "counts": fill.counts,
                                               "results": results}, indent=2))
    bad = [n for n, r in results.items() if not r["ok"] and not r.get("extrapolated") and n != "floor"]
    if bad:
        print(f"WRONG result (sessions left) for: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
