"""Log the site's users in through the real login page, or check whether their sessions still work.

Run inside the Molecule target from the project folder with the site's virtualenv:
  .venv/bin/python site_sessions.py login PASSWORD USERNAME[:staff][=ZONE]...   prints {"username": "session key"}
    (=ZONE: the login form sends it as the browser's time zone, as the login page's script does)
  .venv/bin/python site_sessions.py check SESSIONS_JSON                   prints {"username": {...}}
Django's test client sends real requests through the whole middleware stack (no server needed).
"""
import json
import os
import sys

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lcstats.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.sessions.backends.base import SessionBase  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402


def signed_in_as(response, username):
    marker = f'Signed in as <span id="username">{username}</span>'
    return response.status_code == 200 and marker in response.content.decode()


def login(password, specs):
    sessions = {}
    for spec in specs:
        spec, _, zone = spec.partition("=")  # usernames may hold "@" (the cluster scenario's do)
        username, _, role = spec.partition(":")
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = role == "staff"
        user.set_password(password)
        user.save()
        client = Client()
        response = client.post("/accounts/login/", {"username": username, "password": password,
                                                     "browser_zone": zone})
        if response.status_code != 302:
            sys.exit(f"logging in as {username} gave HTTP {response.status_code}, not a redirect")
        if not signed_in_as(client.get("/"), username):
            sys.exit(f"after logging in, / does not say 'Signed in as {username}'")
        sessions[username] = client.cookies[settings.SESSION_COOKIE_NAME].value
    print(json.dumps(sessions))


def check(sessions):
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
    report = {}
    for username, key in sessions.items():
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        response = client.get("/")
        store: SessionBase = store_class()
        report[username] = {
            "signed_in": signed_in_as(response, username),
            "status": response.status_code,
            "location": response.get("Location", ""),
            "stored": store.exists(key),
        }
    print(json.dumps(report))


def main(argv):
    if len(argv) >= 3 and argv[0] == "login":
        login(argv[1], argv[2:])
    elif len(argv) == 2 and argv[0] == "check":
        check(json.loads(argv[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
