#!/usr/bin/env python3
"""Does the site stay up while `logout_all_users` purges a million sessions on PostgreSQL?

Fills PostgreSQL with N sessions (the same mix as bench_logout.py), starts the real site
(`manage.py runserver --noreload`, multi-threaded) and a small, bounded load: a few client threads on
loopback, each logging in, viewing pages, logging out, with think time between requests. After an idle
phase it runs `manage.py logout_all_users` as its own process (as cron would) and keeps the load on until
a few seconds after the purge ends; then everything stops by itself. It reports p50/p99 latency and
errors for requests that overlapped the purge and for the idle phase before it.

    .venv/bin/python benchmarks/bench_site_up.py -n 1000000 --doc docs/benchmarks.md

A redirect to the login page after the purge is the purge working, not an error: the client logs in
again. Errors are: connection failures, timeouts, 4xx/5xx, or a login that does not sign in.

With --schedule it runs no purge; it measures page views in three phases of --phase-seconds each on
one server: no schedule recorded; a recorded schedule whose clock cutoff is in force (every signed-in
request compares against it); and `--scheduler none`, the site cleaning session storage itself,
with its interval shortened to --cleanup-every seconds so turns really happen while it is measured.

    .venv/bin/python benchmarks/bench_site_up.py --schedule -n 100000 --phase-seconds 30 --doc docs/benchmarks.md
"""
import argparse
import contextlib
import datetime as dt
import http.client
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_logout as bench  # noqa: E402  (the fill, the machine description, the doc writer)

MAX_THREADS = 8
TIMEOUT = 10  # seconds per request; a slower answer counts as an error
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Client:
    """One simulated student on one thread: plain http.client, cookies kept by hand."""

    def __init__(self, port, username, record):
        self.port, self.username, self.record = port, username, record
        self.cookies = {}

    def request(self, kind, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            conn.close()
        except OSError as exc:  # refused, reset, timed out
            self.record(kind, start, time.monotonic(), f"{type(exc).__name__}: {exc}")
            return None, "", {}
        end = time.monotonic()
        for value in resp.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        error = None if resp.status < 400 else f"HTTP {resp.status}"
        self.record(kind, start, end, error)
        return resp.status, text, resp.headers

    def log_in(self, password):
        status, text, _ = self.request("login page", "GET", "/accounts/login/")
        token = CSRF_INPUT.search(text or "")
        if status != 200 or not token:
            return False
        body = urllib.parse.urlencode({"username": self.username, "password": password,
                                       "csrfmiddlewaretoken": token.group(1)})
        status, _, headers = self.request("login POST", "POST", "/accounts/login/", body,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 302 or headers.get("Location") != "/":
            if status is not None and status < 400:  # the form came back: not signed in
                self.record("login POST", time.monotonic(), time.monotonic(), f"login failed ({status})")
            return False
        return True

    def view_page(self):
        """True while signed in; False once the purge has logged this client out."""
        status, text, _ = self.request("page view", "GET", "/")
        return status == 200 and "Signed in as" in text

    def log_out(self):
        self.request("logout POST", "POST", "/accounts/logout/", "",
                     {"X-CSRFToken": self.cookies.get("csrftoken", ""),
                      "Content-Type": "application/x-www-form-urlencoded"})
        self.cookies.pop("sessionid", None)


def client_loop(port, username, password, views_per_login, think, stop, record, relogins):
    client = Client(port, username, record)
    while not stop.is_set():
        if not client.log_in(password):
            stop.wait(think)
            continue
        for _ in range(views_per_login):
            if stop.wait(think):
                return
            if not client.view_page():
                relogins.append(time.monotonic())  # logged out under our feet: log in again
                break
        else:
            if not stop.wait(think):
                client.log_out()


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summarise(rows, label):
    lines = []
    for kind in ["all requests", "page view", "login page", "login POST", "logout POST"]:
        sel = [r for r in rows if kind == "all requests" or r[0] == kind]
        if not sel:
            continue
        ms = [(end - start) * 1000 for _, start, end, _ in sel]
        errors = sum(1 for *_, err in sel if err)
        lines.append(f"| {label} | {kind} | {len(sel)} | {percentile(ms, 50):.0f} ms | "
                     f"{percentile(ms, 99):.0f} ms | {max(ms):.0f} ms | {errors} |")
    return lines


def password_check_ms(password, runs=5):
    """What one login's password check costs on its own, in this process (median of runs): the
    hasher's deliberate work, which every login POST pays whether or not a purge is running."""
    from django.contrib.auth.hashers import check_password, get_hasher, make_password

    encoded = make_password(password)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        check_password(password, encoded)
        times.append((time.perf_counter() - start) * 1000)
    hasher = get_hasher()
    rounds = getattr(hasher, "iterations", None)
    return sorted(times)[runs // 2], f"{hasher.algorithm}" + (f", {rounds:,} iterations" if rounds else "")


def wait_for_site(port, proc, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("runserver exited before it answered")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/accounts/login/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the site did not answer on 127.0.0.1:{port} within {deadline} s")


# The site for --schedule: runserver with students.cleanup's interval (and its per-process check)
# shortened, so the cleanup's turns fall inside the measured phase.
SERVER_WITH_SHORT_CLEANUP = (
    "import sys, datetime, django; django.setup(); import students.cleanup as c; "
    "c.CLEANUP_INTERVAL = datetime.timedelta(seconds=float(sys.argv[1])); c.CHECK_SECONDS = float(sys.argv[1]) / 2; "
    "from django.core.management import call_command; call_command('runserver', '--noreload', sys.argv[2])"
)


def schedule_phases(args, port, rows, lock_rows):
    """Record each phase's schedule from this process, wait until the site's cache has it, measure.
    Returns [(label, rows of that phase, note)]."""
    from django.core.management import call_command
    from django.utils import timezone

    from students.cleanup import last_cleanup
    from students.models import LogoutSchedule

    def in_force_since_yesterday(scheduler):
        hh_mm = f"{timezone.now() - dt.timedelta(hours=1):%H:%M}"  # passed an hour ago: in force
        call_command("logout_schedule", "--set", hh_mm, "--timezone", "UTC", "--scheduler", scheduler,
                     "--keep-staff", stdout=open(os.devnull, "w"))
        LogoutSchedule.objects.update(recorded_at=timezone.now() - dt.timedelta(days=1))

    phases = [("no schedule", lambda: call_command("logout_schedule", "--clear", stdout=open(os.devnull, "w"))),
              ("schedule, cutoff in force", lambda: in_force_since_yesterday("cron")),
              ("scheduler none, site cleanup on", lambda: in_force_since_yesterday("none"))]
    results = []
    for label, setup in phases * args.rounds:  # interleaved, so a drift in the machine's load hits all
        setup()
        time.sleep(6)  # the site's cached view of the schedule is at most 5 s old (students.cutoff)
        before = bench.count_sessions()
        start = time.monotonic()
        time.sleep(args.phase_seconds)
        end = time.monotonic()
        with lock_rows:
            chosen = [r for r in rows if r[1] >= start and r[2] <= end]
        after = bench.count_sessions()
        note = f"sessions {before:,} -> {after:,}"
        if "cleanup" in label:
            note += f"; last cleanup {last_cleanup():%H:%M:%S}" if last_cleanup() else "; no cleanup ran"
        results.append((label, chosen, note))
    merged = {}
    for label, chosen, note in results:
        rows_so_far, notes = merged.get(label, ([], []))
        merged[label] = (rows_so_far + chosen, notes + [note])
    return [(label, chosen, "; ".join(notes)) for label, (chosen, notes) in merged.items()]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1_000_000, help="sessions to fill (default 1000000)")
    p.add_argument("--threads", type=int, default=2, help=f"client threads (max {MAX_THREADS})")
    p.add_argument("--think", type=float, default=0.05, help="seconds between one client's requests")
    p.add_argument("--views-per-login", type=int, default=20)
    p.add_argument("--idle-seconds", type=float, default=20, help="load before the purge starts")
    p.add_argument("--after-seconds", type=float, default=5, help="load after the purge ends")
    p.add_argument("--max-seconds", type=float, default=600, help="hard stop for the whole load phase")
    p.add_argument("--doc", help="write the result into this markdown file (e.g. docs/benchmarks.md)")
    p.add_argument("--schedule", action="store_true",
                   help="no purge: page views without a schedule, with one, and with the no-scheduler cleanup")
    p.add_argument("--phase-seconds", type=float, default=30, help="with --schedule: length of each phase")
    p.add_argument("--rounds", type=int, default=3, help="with --schedule: times the three phases are repeated")
    p.add_argument("--cleanup-every", type=float, default=2,
                   help="with --schedule: the cleanup interval in the last phase, in seconds (real: 600)")
    args = p.parse_args()
    if not 1 <= args.threads <= MAX_THREADS or args.n < 1:
        p.error(f"--threads must be 1..{MAX_THREADS} and -n >= 1")
    command = " ".join([".venv/bin/python benchmarks/bench_site_up.py", *map(shlex.quote, sys.argv[1:])])

    import servers  # tests/servers.py

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(servers.postgres())
        bench.configure("postgres", url, "locmem://")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        fill = bench.Fill(args.n)
        fill.generate()
        target = bench.PostgresTarget(url)
        target.load_once(fill)
        info = bench.versions("locmem://")
        students = [f"student{i:07d}" for i in range(args.threads)]

        port = servers.free_port()
        if args.schedule:
            site = [sys.executable, "-c", SERVER_WITH_SHORT_CLEANUP, str(args.cleanup_every), f"127.0.0.1:{port}"]
        else:
            site = [sys.executable, str(bench.REPO / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"]
        server = subprocess.Popen(site, env=os.environ.copy(), cwd=bench.REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(lambda: (server.terminate(), server.wait(timeout=10)))
        wait_for_site(port, server)

        rows, relogins, lock = [], [], threading.Lock()

        def record(kind, start, end, error):
            with lock:
                rows.append((kind, start, end, error))

        stop = threading.Event()
        hard_stop = threading.Timer(args.max_seconds, stop.set)  # the load ends by itself, whatever happens
        hard_stop.start()
        stack.callback(hard_stop.cancel)
        threads = [threading.Thread(target=client_loop, daemon=True,
                                    args=(port, name, bench.BENCH_PASSWORD, args.views_per_login, args.think,
                                          stop, record, relogins)) for name in students]
        for t in threads:
            t.start()
        if args.schedule:
            phases = schedule_phases(args, port, rows, lock)
            stop.set()
            for t in threads:
                t.join(TIMEOUT + 5)
            return report_schedule(args, command, info, phases, rows, relogins)
        stop.wait(args.idle_seconds)
        purge_start = time.monotonic()
        purge = subprocess.run([sys.executable, str(bench.REPO / "manage.py"), "logout_all_users"],
                               env=os.environ.copy(), capture_output=True, text=True)
        purge_end = time.monotonic()
        stop.wait(args.after_seconds)
        stop.set()
        for t in threads:
            t.join(TIMEOUT + 5)
        left = bench.count_sessions()
        check_ms, hasher = password_check_ms(bench.BENCH_PASSWORD)  # on a quiet machine again

    if purge.returncode != 0:
        print(purge.stderr, file=sys.stderr)
        sys.exit(f"logout_all_users failed with exit code {purge.returncode}")
    idle = [r for r in rows if r[2] <= purge_start]
    during = [r for r in rows if r[1] < purge_end and r[2] > purge_start]
    text = "\n".join([
        f"Run {dt.datetime.now().astimezone().isoformat(timespec='seconds')} on {bench.machine()}; "
        + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        f"N = {args.n:,} sessions on PostgreSQL, purged by `manage.py logout_all_users` in "
        f"{purge_end - purge_start:.1f} s (process start to exit): "
        + " / ".join(purge.stdout.strip().splitlines()) + f". Sessions left afterwards: {left:,} "
        f"(logins made during and after the purge). {args.threads} client threads against "
        f"`manage.py runserver --noreload` on loopback, {args.think * 1000:.0f} ms think time, "
        f"{args.views_per_login} page views per login; {len(relogins)} page view(s) found the client logged "
        "out by the purge and it logged in again.",
        "",
        "| phase | requests | count | p50 | p99 | max | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
        *summarise(idle, "idle"),
        *summarise(during, "during purge"),
        "",
        "Errors seen: " + (", ".join(sorted({r[3] for r in rows if r[3]})) or "none") + ".",
        "",
        f"One password check alone, as every login POST makes it ({hasher}): {check_ms:.0f} ms "
        "(median of 5, in the benchmark process after the load stopped).",
        "",
        "Reproduce:", "", "```", command, "```",
    ])
    print(text)
    if args.doc:
        bench.write_doc(args.doc, "site-up", text)


def report_schedule(args, command, info, phases, rows, relogins):
    lines = [
        f"Run {dt.datetime.now().astimezone().isoformat(timespec='seconds')} on {bench.machine()}; "
        + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        f"N = {args.n:,} sessions on PostgreSQL (db engine, locmem cache), no purge. {args.threads} client "
        f"threads against runserver on loopback, {args.think * 1000:.0f} ms think time, {args.views_per_login} "
        f"page views per login; {args.rounds} rounds of the three phases, {args.phase_seconds:.0f} s each, measured after the site's cached view of "
        f"the schedule had been refreshed. In the last phase the cleanup interval was {args.cleanup_every:g} s "
        "instead of 600 s (each turn deletes up to 2,000 expired or cut-off sessions), so its turns really "
        f"fall inside the measurement; {len(relogins)} page view(s) found the client logged out.",
        "",
        "| phase | requests | count | p50 | p99 | max | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, chosen, _ in phases:
        lines += [line for line in summarise(chosen, label) if "| page view |" in line or "| all requests |" in line]
    lines += ["", *(f"- {label}: {note}" for label, _, note in phases), "",
              "Errors seen: " + (", ".join(sorted({r[3] for r in rows if r[3]})) or "none") + ".",
              "", "Reproduce:", "", "```", command, "```"]
    text = "\n".join(lines)
    print(text)
    if args.doc:
        bench.write_doc(args.doc, "site-up-schedule", text)


if __name__ == "__main__":
    main()
