"""A local STAND-IN for Healthchecks.io's pinging API, for tests only (the real service cannot be reached
from the test machines, and a test must not ping it). It is not Healthchecks.io: it answers the requests
the wrapper sends the way the documentation (healthchecks.io/docs/http_api/, /docs/attaching_logs/,
/docs/signaling_failures/, /docs/measuring_script_run_time/) says the service does, and records them so a
test can check what the wrapper sent.

Documented, and followed here:
- a check's ping URL is <base>/<uuid>; appending /start, /fail, /log or /<exit status 0-255> signals a start,
  a failure, a log event or an exit status (0 success, anything else a failure);
- HEAD, GET and POST are all pings; a POST's body is kept, the first 100 kB (100000 bytes) of it;
- the query parameter rid (a UUID) pairs a start with the completion of the same run;
- a successful ping is answered "200 OK" with the body "OK"; an unknown check "404" ("not found").
Guessed (not stated in the documentation, or not needed to the letter): the answers to a malformed rid or an
exit status above 255 (400 here), and the body of every answer other than 200.

Two behaviours of a monitor that is in trouble, for the tests of the wrapper's timeouts:
- `hold_seconds`: every request is received, recorded, then left without an answer that long (a monitor
  that hangs); `held` is set while one is waiting, and `release()` lets them go;
- a monitor that refuses connections needs no server: a port nothing listens on (tests/servers.free_port).

Run as a program (molecule/monitoring starts it inside the target, so the real cron run pings it), it
serves one check and appends every ping it accepts to a JSON-lines file:
  python3 healthchecks_standin.py --port 8000 --check UUID --record pings.jsonl
"""
import argparse
import json
import threading
import uuid
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BODY_LIMIT = 100_000  # bytes of a POST body the service keeps, as documented
SIGNALS = {"start", "fail", "log"}


@dataclass
class Ping:
    method: str
    check: str  # the check's UUID
    signal: str  # "success" (the bare URL), "start", "fail", "log" or an exit status ("0".."255")
    rid: str | None
    body: bytes


class StandInHealthchecks:
    def __init__(self, hold_seconds=0.0, check=None, port=0, record=None):
        self.check = check or str(uuid.uuid4())
        self.record = record  # a file to append each ping to, as a JSON line
        self.pings: list[Ping] = []
        self.hold_seconds = hold_seconds
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
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

    def answer(self, method, path, body):
        """(status, text) for one ping, as the documentation describes."""
        parts = urlsplit(path)
        segments = parts.path.strip("/").split("/")
        if not segments or segments[0] != self.check or len(segments) > 2:
            return 404, "not found"
        signal = segments[1] if len(segments) == 2 else "success"
        if signal not in SIGNALS | {"success"} and not (signal.isdigit() and 0 <= int(signal) <= 255):
            return 400, "invalid url format"  # guessed
        rids = parse_qs(parts.query).get("rid")
        rid = rids[0] if rids else None
        if rid is not None:
            try:
                uuid.UUID(rid)
            except ValueError:
                return 400, "invalid rid"  # guessed
        ping = Ping(method, self.check, signal, rid, body[:BODY_LIMIT])
        with self._lock:
            self.pings.append(ping)
            if self.record:
                with open(self.record, "a") as record:
                    record.write(json.dumps(asdict(ping) | {"body": ping.body.decode(errors="replace")}) + "\n")
        return 200, "OK"

    def _handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, text = standin.answer(method, self.path, body)
                if standin.hold_seconds:
                    standin.held.set()
                    standin._release.wait(standin.hold_seconds)
                payload = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
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
    args = parser.parse_args()
    StandInHealthchecks(check=args.check, port=args.port, record=args.record).server.serve_forever()


if __name__ == "__main__":
    main()
