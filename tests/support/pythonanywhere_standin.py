"""A local STAND-IN for PythonAnywhere's scheduled-tasks API, for tests only (the real API cannot be reached
from the test machines, and a real account cannot be switched between kinds). It is not PythonAnywhere.

Documented, and followed here (help.pythonanywhere.com/pages/API, /pages/ScheduledTasks, the PythonAnywhere
blog on task expiry, and the fields PythonAnywhere's own helper scripts read from a task):
- endpoints /api/v0/user/{username}/schedule/ (GET list, POST create -> 201) and
  /api/v0/user/{username}/schedule/{id}/ (GET, PUT, PATCH -> 200, DELETE -> 204; unknown id -> 404);
- header `Authorization: Token <token>`;
- parameters command, enabled, interval ("daily" | "hourly"), hour, minute; tasks run in UTC;
- a task's fields: id, url, user, command, enabled, interval, hour, minute, printable_time, expiry,
  extend_url, can_enable, logfile, description;
- hourly tasks are for paying accounts; a free account's task stops after four weeks unless extended;
- (from issue 14, not from a page stored here) free accounts created since 2026-01-15 get no scheduled
  task, older free accounts one daily task;
- the rate limit: 40 requests per minute per endpoint -> 429.

Guesses (not documented; the role must not depend on them beyond "the create was refused"):
- the refusal of a create beyond the account's allowance, or of an hourly task on a free account:
  HTTP 403 with {"detail": "..."} (the exact status and body are unknown);
- 401 for a missing or wrong token, 403 for another user's path, 400 with per-field errors for a bad value,
  and a daily task without an hour refused with 400;
- printable_time "HH:MM" (daily) or "MM minutes past every hour" (hourly); expiry an ISO date, four weeks
  from creation on free accounts and null on paid ones; extend_url and logfile paths; can_enable false for
  an hourly task on a free account; description writable like the documented parameters.

Three kinds of account: ACCOUNT_PAID (hourly or daily, many tasks), ACCOUNT_FREE_ONE (one daily task),
ACCOUNT_FREE_NONE (no task). Bodies may be JSON or form-encoded. Every request is recorded (method, path,
parsed body) so a test can check what was sent, e.g. that hour 0 went as 0.
"""
import json
import threading
import time
from collections import defaultdict, deque
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

RATE_LIMIT = 40  # requests per minute per endpoint, as documented
FREE_EXPIRY_DAYS = 28  # four weeks, as documented for free accounts
ACCOUNT_PAID, ACCOUNT_FREE_ONE, ACCOUNT_FREE_NONE = "paid", "free-one-daily-task", "free-no-task"
# (how many tasks, hourly allowed, days until a new task expires or None)
ALLOWANCES = {ACCOUNT_PAID: (20, True, None), ACCOUNT_FREE_ONE: (1, False, FREE_EXPIRY_DAYS),
              ACCOUNT_FREE_NONE: (0, False, FREE_EXPIRY_DAYS)}
# Guessed refusal bodies (see the docstring).
REFUSED_NO_ALLOWANCE = {"detail": "You have reached the maximum number of scheduled tasks for your account."}
REFUSED_HOURLY = {"detail": "Hourly tasks are only available to paying customers."}


class StandInAPI:
    def __init__(self, username, token, account=ACCOUNT_PAID, today=None, clock=time.monotonic):
        self.username, self.token, self.account = username, token, account
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

    def add_task(self, **fields):
        """A task made elsewhere (the Tasks page, an older role): stored as the API would hold it."""
        task = {"id": self.next_id, "description": "", "enabled": True, "hour": None,
                "expiry": self._new_expiry(), **fields}
        self.tasks[task["id"]] = task
        self.next_id = max(self.tasks) + 1
        return task

    # What the documented API does, one method per endpoint and verb.

    def task_view(self, task):
        view = dict(task)
        base = f"/api/v0/user/{self.username}/schedule/{task['id']}/"
        hourly_allowed = ALLOWANCES[self.account][1]
        view.update({
            "url": base,
            "user": self.username,
            "printable_time": (f"{task['hour']:02d}:{task['minute']:02d}" if task["interval"] == "daily"
                               else f"{task['minute']:02d} minutes past every hour"),
            "extend_url": f"/user/{self.username}/schedule/task/{task['id']}/extend",
            "can_enable": task["interval"] == "daily" or hourly_allowed,
            "logfile": f"/user/{self.username}/files/var/log/tasklog-{task['id']}.log",
        })
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
                return self._create(body or {})
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
            if changes.get("interval") == "hourly" and not ALLOWANCES[self.account][1]:
                return 403, REFUSED_HOURLY
            task.update(changes)
            return 200, self.task_view(task)
        if method == "DELETE":
            del self.tasks[task["id"]]
            return 204, None
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def _create(self, body):
        task, errors = self.validate(body, partial=False)
        if task.get("interval") == "daily" and task.get("hour") is None:
            errors["hour"] = ["A daily task needs an hour."]
        if errors:
            return 400, errors
        most, hourly_allowed, _ = ALLOWANCES[self.account]
        if len(self.tasks) >= most:
            return 403, REFUSED_NO_ALLOWANCE
        if task["interval"] == "hourly" and not hourly_allowed:
            return 403, REFUSED_HOURLY
        return 201, self.task_view(self.add_task(**task))

    def _new_expiry(self):
        days = ALLOWANCES[self.account][2]
        return None if days is None else (self.today + timedelta(days=days)).isoformat()

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
