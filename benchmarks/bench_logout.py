"""Time `logout_all_users` against the floor of its session engine and two common peers, side by side.

Backends (--backend): sqlite and postgres (the db engine), cached_db-redis (cached_db on PostgreSQL +
Django's RedisCache), cache-redis (the cache engine on Django's RedisCache; users and run records in
SQLite) and file (the file engine, SESSION_FILE_PATH a fresh folder in the benchmark's temp folder; users
in SQLite). It fills the store with N sessions in a realistic mix (live students, 5% of all sessions
"keep me signed in" ones with their RememberedLogin rows, live staff, anonymous, expired; data encoded by
Django's own SessionStore; one ownership-index row per login session, as the server writes at login),
then runs each approach on an identical refill, each in its own child process so one approach's memory
never shows up in another's figure:

  floor            the cheapest correct purge of that store, nothing decoded:
                     db         one raw SQL `DELETE FROM django_session` (every floor also empties the
                                index's table: `DELETE FROM students_sessionowner`)
                     cached_db  one `DELETE ... RETURNING session_key`, then UNLINK of those cache keys
                                in batches of 1,000, pipelined
                     cache      SCAN MATCH the session keys (32 key chars after the engine's prefix)
                                + UNLINK in batches of 1,000, pipelined
                     file       os.scandir + unlink of the regular files named <cookie name><session key>
  naive            Session.objects.all().delete() then `clearsessions` (db and cached_db only)
  per_session      SessionStore(key).delete() for every key (what ansible/awx's expire_sessions does);
                   with --per-session-limit it runs on the first K keys and the time is extrapolated
                   (db and cached_db only)
  ours             `logout_all_users`
  ours_keep_staff  `logout_all_users --keep-staff`
  ours_keep_remembered  `logout_all_users --keep-remembered`: keeps the remembered sessions (5% of the fill),
                   each checked against its row; every other session goes
  ours_late        `logout_all_users --scheduled` fired 6 hours late (a recorded schedule whose latest
                   time was 6 h ago): it spares sessions that began after that time, so it decodes
                   those saved since (about 6 h / 13 days of the fill)
  ours_zone_hour   `logout_all_users --scheduled` in per-user time zone mode, one of its 24 hourly runs
                   a day (record_zone_hour): every tenth student's zone is Asia/Tokyo, everyone else has
                   none (the schedule's, UTC), and the run stands for Tokyo's time an hour ago. It
                   deletes the Tokyo users' sessions (7.5% of the live ones) and the expired ones;
                   every other session stays. With the ownership index (issue 22) it deletes the
                   Tokyo users' sessions by the keys their rows give and reads only the sessions
                   without a row (the anonymous ones).
  floor_zone_keys  ours_zone_hour's floor: deleting exactly what it deletes, by key, the keys already
                   known (the Tokyo users' rows, read before the clock starts): their sessions and
                   rows (cached_db: and cache entries), then the expired sessions and their rows

Before each approach it plants unrelated Redis keys (other key prefixes, versions, cache entries) or
unrelated files in the session folder; after it, it checks what is left: exactly the sessions the
approach must keep (by key, against the fill), no cache key but those, and every unrelated key or file
untouched. It prints a table (median wall time, ratio to the floor, cost per session, peak RSS of the
child, what is left) and the command that reproduces it; --doc writes the table into docs/benchmarks.md.

    .venv/bin/python -m benchmarks.bench_logout --backend sqlite -n 1000000 --doc docs/benchmarks.md

PostgreSQL and Redis are started for the run (throw-away instances from tests/support/servers.py). The parts
live beside this script: benchmarks.fill, benchmarks.stores, benchmarks.approaches, benchmarks.report.
"""
import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

from benchmarks.approaches import APPROACHES, TABLE_ONLY, measure
from benchmarks.fill import Fill
from benchmarks.report import render, versions, write_doc
from benchmarks.stores import ENGINES, open_store


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=list(ENGINES), default="sqlite")
    p.add_argument("-n", type=int, default=100_000, help="sessions to fill (default 100000)")
    p.add_argument("--runs", type=int, default=3, help="runs per approach; the median is reported")
    p.add_argument("--approaches", help=f"comma-separated subset of {','.join(APPROACHES)} (default: all that "
                                        "apply to the backend; naive and per_session need a session table)")
    p.add_argument("--per-session-limit", type=int, default=0,
                   help="run per_session on the first K keys only and scale its time to N (0 = all)")
    p.add_argument("--per-session-runs", type=int, default=1, help="runs for the slow per_session peer")
    p.add_argument("--profile", metavar="DIR", help="also write a cProfile of each approach's child here")
    p.add_argument("--doc", help="write the table into this markdown file (e.g. docs/benchmarks.md)")
    p.add_argument("--section", help="the doc's table to replace (between <!-- bench:SECTION --> markers; "
                                     "default: the backend's name)")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    args = p.parse_args()

    applicable = [a for a in APPROACHES if ENGINES[args.backend] in ("db", "cached_db") or a not in TABLE_ONLY]
    approaches = [a.strip() for a in (args.approaches or ",".join(applicable)).split(",") if a.strip()]
    unknown = set(approaches) - set(applicable)
    if unknown or args.n < 1 or args.runs < 1:
        p.error(f"approaches {sorted(unknown)} do not apply to --backend {args.backend} (these do: "
                f"{','.join(applicable)})" if unknown else "-n and --runs must be >= 1")
    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--json" and sys.argv[i:i + 1] != ["--json"]]
    command = " ".join([".venv/bin/python -m benchmarks.bench_logout", *map(shlex.quote, shown)])

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    with contextlib.ExitStack() as stack:
        store, cache_url = open_store(stack, args.backend)

        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        fill = Fill(args.n, live_only=ENGINES[args.backend] == "cache")
        t = time.perf_counter()
        fill.generate()
        store.load_once(fill)
        print(f"filled {args.n:,} sessions in {time.perf_counter() - t:.1f} s: {fill.counts}", file=sys.stderr)
        info = versions(cache_url)
        results = measure(store, fill, approaches, args.runs, args.per_session_runs, args.per_session_limit,
                          args.profile, label=args.backend)
        from django.db import connection

        connection.close()

    text = render(args, fill, results, info, command)
    print(text)
    if args.doc:
        write_doc(args.doc, args.section or args.backend, text)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": args.backend, "n": args.n, "counts": fill.counts,
                                               "versions": info, "results": results}, indent=2))
    bad = [n for n, r in results.items() if not r["ok"]]
    if bad:
        print(f"WRONG result (what is left) for: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
