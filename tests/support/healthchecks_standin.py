"""A local STAND-IN for Healthchecks' pinging API, for tests only. It is not Healthchecks.

Why a stand-in: issue 23 asked for the real server (github.com/healthchecks/healthchecks, a Django
project) started by the tests from a pinned release. It is not installable from the package registries
this project may use: it is not on PyPI (`pip download healthchecks` finds nothing), nor in Debian or
npm, and the tests may download nothing from anywhere else. So nothing of it is vendored, and this
stand-in follows its documented protocol instead. Written from the documentation (docs/http_api,
docs/measuring_script_run_time, docs/attaching_logs, docs/signaling_failures,
docs/self_hosted_configuration) and from reading the server's source (hc/api/views.py `ping`,
hc/api/models.py `Check.ping`/`get_status`, at v4.3); no code of it is copied.

Documented, and followed here:
- a check's ping URL is <base>/<uuid>; appending /start, /fail, /log or /<exit status 0-255> signals a
  start, a failure, a log event or an exit status (0 success, anything else a failure);
- HEAD, GET and POST are all pings; a POST's body is kept up to PING_BODY_LIMIT bytes, its first ones
  (self-hosted default 10000, healthchecks.io 100000), and every answer to a ping carries
  `Ping-Body-Limit: <n>`;
- the query parameter rid (a UUID) pairs a start with the completion of the same run; the run's duration
  is the time between them;
- a "start" without a success or failure within the check's grace time makes the check "down" (the
  alerting rule of /start); a "log" event changes no state;
- a success makes the check "up", a failure "down"; an up check goes down when no success came for its
  period plus its grace time ("simple" checks);
- answers: "200 OK" with the body "OK"; "404 not found" for an unknown check.
Read from the server's source (not in the documentation; v4.3):
- a success whose rid differs from the open start's leaves that start open (the check still goes
  down after the grace time); a failure, or a success without rid, closes it;
- 400 "invalid url format" for an exit status above 255, 400 "invalid uuid format" for a malformed rid.
Guessed or left out: per-user limits, rate limiting (healthchecks.io answers 429 past a limit),
keyword filters, cron/OnCalendar checks, "paused", e-mail pings, the API for reading pings back (the
tests read this object, or with --record a JSON-lines file).

Trouble, for the tests of the wrapper's timeouts and retries:
- `hold_seconds`: every request is received, recorded, then left without an answer that long (a monitor
  that hangs); `held` is set while one is waiting, and `release()` lets them go;
- `unavailable`: the first that many requests get "503 Service Unavailable" (a proxy in front of a
  restarting server) and are not pings; `attempts` holds every request's arrival time;
- a monitor that refuses connections needs no server: a port nothing listens on (tests/support/servers.free_port).

Run as a program (molecule/monitoring starts it inside the target, so the real cron run pings it), it
serves one check and appends every ping it accepts to a JSON-lines file, with "running": whether a
start is still open after it:
  python3 healthchecks_standin.py --port 8000 --check UUID --record pings.jsonl [--body-limit BYTES]
"""
import argparse
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BODY_LIMIT = 10_000  # self-hosted Healthchecks' default PING_BODY_LIMIT, in bytes
SIGNALS = {"start", "fail", "log"}


@dataclass
class Ping:
    method: str
    check: str  # the check's UUID
    signal: str  # what the URL said: "success" (the bare URL), "start", "fail", "log" or "0".."255"
    kind: str  # what the server made of it: "start", "success", "fail" or "log"
    exit_status: int | None
    rid: str | None
    body: bytes  # as kept: at most the body limit, its first bytes
    received: float  # time.time()
    duration: float | None  # seconds since the start it closed (same rid), else None


class StandInHealthchecks:
    def __init__(self, hold_seconds=0.0, check=None, port=0, record=None, body_limit=BODY_LIMIT,
                 grace=3600.0, period=86400.0, unavailable=0):
        self.check = check or str(uuid.uuid4())
        self.record = record  # a file to append each ping to, as a JSON line
        self.body_limit = body_limit
        self.grace, self.period = grace, period
        self.pings: list[Ping] = []
        self.attempts: list[float] = []
        self.unavailable = unavailable
        self.hold_seconds = hold_seconds
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        # The check's state, as the server keeps it.
        self._status = "new"
        self._last_ping = None  # the last success or failure
        self._last_start = None
        self._last_start_rid = None
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ping_url = f"{self.base}/{self.check}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def release(self):
        self._release.set()

    def signals(self):
        with self._lock:
            return [ping.signal for ping in self.pings]

    def running(self):
        """True while a start has had no success or failure that closes it (the server's "started")."""
        with self._lock:
            return self._last_start is not None

    def status(self, at=None):
        """The check's status at `at` (default now): new, up, started, grace or down."""
        at = time.time() if at is None else at
        with self._lock:
            if self._last_start is not None:
                return "down" if at >= self._last_start + self.grace else "started"
            if self._status in ("new", "down"):
                return self._status
            if at >= self._last_ping + self.period + self.grace:
                return "down"
            return "grace" if at >= self._last_ping + self.period else "up"

    def answer(self, method, path, body):
        """(status, text) for one ping, as the server answers it."""
        parts = urlsplit(path)
        segments = parts.path.strip("/").split("/")
        if not segments or segments[0] != self.check or len(segments) > 2:
            return 404, "not found"
        signal = segments[1] if len(segments) == 2 else "success"
        exit_status = int(signal) if signal.isdigit() else None
        if signal not in SIGNALS | {"success"} and exit_status is None:
            return 404, "not found"  # no URL pattern matches
        if exit_status is not None and exit_status > 255:
            return 400, "invalid url format"
        rids = parse_qs(parts.query).get("rid")
        rid = rids[0] if rids else None
        if rid is not None:
            try:
                rid = str(uuid.UUID(rid))
            except ValueError:
                return 400, "invalid uuid format"
        kind = {"success": "success", "0": "success"}.get(signal, "fail" if exit_status else signal)
        with self._lock:
            ping = self._ping(method, signal, kind, exit_status, rid, body[: self.body_limit])
            if self.record:
                with open(self.record, "a") as record:
                    line = asdict(ping) | {"body": ping.body.decode(errors="replace"),
                                           "running": self._last_start is not None}
                    record.write(json.dumps(line) + "\n")
        return 200, "OK"

    def _ping(self, method, signal, kind, exit_status, rid, body):
        now, duration = time.time(), None
        if kind == "start":
            self._last_start, self._last_start_rid = now, rid
        elif kind in ("success", "fail"):
            self._last_ping = now
            if self._last_start is not None:
                if self._last_start_rid == rid:
                    duration = now - self._last_start
                    self._last_start = None
                elif kind == "fail" or rid is None:
                    self._last_start = None
            self._status = "up" if kind == "success" else "down"
        ping = Ping(method, self.check, signal, kind, exit_status, rid, body, now, duration)
        self.pings.append(ping)
        return ping

    def _handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with standin._lock:
                    standin.attempts.append(time.time())
                    refuse = len(standin.attempts) <= standin.unavailable
                if refuse:
                    status, text = 503, "Service Unavailable"
                else:
                    status, text = standin.answer(method, self.path, body)
                if standin.hold_seconds:
                    standin.held.set()
                    standin._release.wait(standin.hold_seconds)
                payload = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    if status == 200:
                        self.send_header("Ping-Body-Limit", str(standin.body_limit))
                    self.end_headers()
                    if method != "HEAD":
                        self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (a hanging monitor's test)

            def do_GET(self):
                self._serve("GET")

            def do_HEAD(self):
                self._serve("HEAD")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler


def main():
    parser = argparse.ArgumentParser(description="Serve a stand-in of Healthchecks' pinging API for one check.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--check", required=True, help="the check's UUID")
    parser.add_argument("--record", required=True, help="file to append each ping to (JSON lines)")
    parser.add_argument("--body-limit", type=int, default=BODY_LIMIT, help="bytes of a body kept (Ping-Body-Limit)")
    args = parser.parse_args()
    StandInHealthchecks(check=args.check, port=args.port, record=args.record,
                        body_limit=args.body_limit).server.serve_forever()


if __name__ == "__main__":
    main()
