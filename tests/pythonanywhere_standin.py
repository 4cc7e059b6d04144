"""A local STAND-IN for PythonAnywhere's scheduled-tasks API, for tests only (the real API cannot be reached
from the test machines). It is not PythonAnywhere: it follows the contract documented at
help.pythonanywhere.com/pages/API as far as the role uses it, and no further:

- endpoints /api/v0/user/{username}/schedule/ (GET list, POST create -> 201) and
  /api/v0/user/{username}/schedule/{id}/ (GET, PUT, PATCH -> 200, DELETE -> 204; unknown id -> 404);
- header `Authorization: Token <token>`; a missing or wrong token -> 401, another user's path -> 403;
- task fields id, url, user, command, description, enabled, interval ("daily" | "hourly"), hour, minute,
  expiry (a date: free accounts' tasks stop after four weeks), printable_time, logfile;
  a bad field -> 400 with the field's error;
- the rate limit: 40 requests per minute per endpoint -> 429.

Bodies may be JSON or form-encoded. Every request is recorded (method, path, parsed body) so a test can
check what was sent, e.g. that hour 0 went as 0.
"""
import json
import threading
import time
from collections import defaultdict, deque
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

RATE_LIMIT = 40  # requests per minute per endpoint, as documented
EXPIRY_DAYS = 28


class StandInAPI:
    def __init__(self, username, token, today=None, clock=time.monotonic):
        self.username, self.token = username, token
        self.clock = clock  # seconds; a test may stop it to hold a rate-limit window open
        self.today = today or date.today()
        self.tasks = {}
        self.next_id = 1
        self.requests = []  # (method, path, body dict or None)
        self._hits = defaultdict(deque)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # What the documented API does, one method per endpoint and verb.

    def task_view(self, task):
        view = dict(task)
        view["url"] = f"/api/v0/user/{self.username}/schedule/{task['id']}/"
        view["user"] = self.username
        view["printable_time"] = (f"{task['hour']:02d}:{task['minute']:02d}" if task["interval"] == "daily"
                                  else f"{task['minute']:02d} minutes past every hour")
        view["logfile"] = f"/user/{self.username}/files/var/log/tasklog-{task['id']}.log"
        return view

    def validate(self, body, partial):
        task, errors = {}, {}
        for name in ("command", "description", "enabled", "interval", "hour", "minute"):
            if name in body:
                task[name] = body[name]
        if not partial:
            for name in ("command", "interval", "minute"):
                if name not in task:
                    errors[name] = ["This field is required."]
        if "command" in task and not (isinstance(task["command"], str) and task["command"].strip()):
            errors["command"] = ["This field may not be blank."]
        if "interval" in task and task["interval"] not in ("daily", "hourly"):
            errors["interval"] = [f'"{task["interval"]}" is not a valid choice.']
        for name, top in (("hour", 23), ("minute", 59)):
            if name in task and task[name] is not None:
                value = task[name]
                if isinstance(value, str) and value.isdigit():
                    value = int(value)
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                    errors[name] = [f"Ensure this value is a whole number from 0 to {top}."]
                else:
                    task[name] = value
        if "enabled" in task and isinstance(task["enabled"], str):
            task["enabled"] = task["enabled"].lower() in ("true", "1", "on")
        return task, errors

    def handle(self, method, path, headers, body):
        if headers.get("Authorization") != f"Token {self.token}":
            return 401, {"detail": "Invalid token."}
        parts = path.strip("/").split("/")
        if parts[:3] != ["api", "v0", "user"] or len(parts) < 5 or parts[4] != "schedule" or len(parts) > 6:
            return 404, {"detail": "Not found."}
        if parts[3] != self.username:
            return 403, {"detail": "You do not have permission to perform this action."}
        endpoint = "/".join(parts[:5]) + ("/{id}" if len(parts) == 6 else "")
        if not self._allow(endpoint):
            return 429, {"detail": "Request was throttled. Expected available in 60 seconds."}
        if len(parts) == 5:
            if method == "GET":
                return 200, [self.task_view(t) for t in self.tasks.values()]
            if method == "POST":
                task, errors = self.validate(body or {}, partial=False)
                if task.get("interval") == "daily" and task.get("hour") is None:
                    errors["hour"] = ["A daily task needs an hour."]
                if errors:
                    return 400, errors
                task = {"id": self.next_id, "description": "", "enabled": True, "hour": None, **task,
                        "expiry": (self.today + timedelta(days=EXPIRY_DAYS)).isoformat()}
                self.tasks[task["id"]] = task
                self.next_id += 1
                return 201, self.task_view(task)
            return 405, {"detail": f'Method "{method}" not allowed.'}
        task = self.tasks.get(int(parts[5])) if parts[5].isdigit() else None
        if task is None:
            return 404, {"detail": "Not found."}
        if method == "GET":
            return 200, self.task_view(task)
        if method in ("PUT", "PATCH"):
            changes, errors = self.validate(body or {}, partial=method == "PATCH")
            if errors:
                return 400, errors
            task.update(changes)
            return 200, self.task_view(task)
        if method == "DELETE":
            del self.tasks[task["id"]]
            return 204, None
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def _allow(self, endpoint):
        now = self.clock()
        hits = self._hits[endpoint]
        while hits and now - hits[0] >= 60:
            hits.popleft()
        if len(hits) >= RATE_LIMIT:
            return False
        hits.append(now)
        return True

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if not raw:
                    body = None
                elif (self.headers.get("Content-Type") or "").startswith("application/json"):
                    body = json.loads(raw)
                else:
                    body = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                with api._lock:
                    api.requests.append((self.command, self.path, body))
                    status, payload = api.handle(self.command, self.path, self.headers, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):
                pass  # the test reads api.requests instead

        return Handler
