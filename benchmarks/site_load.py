"""The load on a real site: the site as its own server process (`manage.py runserver --noreload`, or
with the cleanup's interval shortened), a few simulated students on threads logging in, viewing pages
and logging out, every request recorded as (kind, start, end, error), and what bench_site_up measures
under it: a purge run as cron would run it, or the phases of --schedule.
"""
import datetime as dt
import http.client
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

from benchmarks.fill import BENCH_PASSWORD
from benchmarks.stores import count_sessions

REPO = Path(__file__).resolve().parent.parent
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


def schedule_phases(load, rounds, phase_seconds):
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
    for label, setup in phases * rounds:  # interleaved, so a drift in the machine's load hits all
        setup()
        time.sleep(6)  # the site's cached view of the schedule is at most 5 s old (students.cutoff)
        before = count_sessions()
        start = time.monotonic()
        time.sleep(phase_seconds)
        end = time.monotonic()
        with load.lock:
            chosen = [r for r in load.rows if r[1] >= start and r[2] <= end]
        after = count_sessions()
        note = f"sessions {before:,} -> {after:,}"
        if "cleanup" in label:
            note += f"; last cleanup {last_cleanup():%H:%M:%S}" if last_cleanup() else "; no cleanup ran"
        results.append((label, chosen, note))
    merged = {}
    for label, chosen, note in results:
        rows_so_far, notes = merged.get(label, ([], []))
        merged[label] = (rows_so_far + chosen, notes + [note])
    return [(label, chosen, "; ".join(notes)) for label, (chosen, notes) in merged.items()]


def start_site(stack, port, cleanup_every=None):
    """The site on 127.0.0.1:port until `stack` ends; with cleanup_every (seconds), the site's own
    cleanup takes its turns that often."""
    if cleanup_every is not None:
        site = [sys.executable, "-c", SERVER_WITH_SHORT_CLEANUP, str(cleanup_every), f"127.0.0.1:{port}"]
    else:
        site = [sys.executable, str(REPO / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"]
    server = subprocess.Popen(site, env=os.environ.copy(), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (server.terminate(), server.wait(timeout=10)))
    wait_for_site(port, server)


class Load:
    """One client thread per username on the site until end() (or max_seconds, whatever happens);
    rows: every request as (kind, start, end, error); relogins: when a page view found its client
    logged out."""

    def __init__(self, stack, port, usernames, views_per_login, think, max_seconds):
        self.rows, self.relogins, self.lock = [], [], threading.Lock()
        self.stop = threading.Event()
        hard_stop = threading.Timer(max_seconds, self.stop.set)  # the load ends by itself, whatever happens
        hard_stop.start()
        stack.callback(hard_stop.cancel)
        self.threads = [threading.Thread(target=client_loop, daemon=True,
                                         args=(port, name, BENCH_PASSWORD, views_per_login, think,
                                               self.stop, self.record, self.relogins)) for name in usernames]
        for t in self.threads:
            t.start()

    def record(self, kind, start, end, error):
        with self.lock:
            self.rows.append((kind, start, end, error))

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT + 5)


def purge_under_load(load, idle_seconds, after_seconds):
    """`manage.py logout_all_users` as its own process (as cron runs it), idle_seconds into the load;
    the load goes on after_seconds after it, then ends. Returns (purge start, purge end, its process)."""
    load.stop.wait(idle_seconds)
    purge_start = time.monotonic()
    purge = subprocess.run([sys.executable, str(REPO / "manage.py"), "logout_all_users"],
                           env=os.environ.copy(), capture_output=True, text=True)
    purge_end = time.monotonic()
    load.stop.wait(after_seconds)
    load.end()
    return purge_start, purge_end, purge
