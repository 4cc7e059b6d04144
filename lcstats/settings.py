"""Settings for the lcstats site, read from environment variables with safe defaults.

DATABASE_URL       sqlite:////abs/path.db (default: db.sqlite3 in the project folder) or
                   postgres://user:pass@host:port/name
CACHE_URL          locmem:// (default), redis://host:port/db, file:///path, dummy://
SESSION_ENGINE     db (default) | cached_db | cache | file | signed_cookies | a dotted module path
SESSION_FILE_PATH  folder for the file session engine (default: the system temp folder)
DJANGO_SECRET_KEY  required for any real deployment (the fallback below is public)
DJANGO_DEBUG       1/true/yes/on to turn DEBUG on (off by default)
DJANGO_ALLOWED_HOSTS  comma-separated (default: localhost,127.0.0.1,[::1])
DJANGO_LOG_LEVEL   level of the "students" loggers on stderr (default INFO)
LOGOUT_LOCK_LEASE_SECONDS  how long a dead run's cluster lock blocks the next one (default 60; students.lock)
LOGOUT_SESSIONS_STORE_IP   1/true/yes/on: the sessions index keeps each login's IP address (default off)
"""
import os
from pathlib import Path

from lcstats.env import cache_from_url, database_from_url, flag, session_engine

BASE_DIR = Path(__file__).resolve().parent.parent

# The fallback is deliberately named insecure: it is public, so sessions signed with it can be
# forged. `manage.py check --deploy` flags it; set DJANGO_SECRET_KEY anywhere real.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "django-insecure-dev-only-key-set-DJANGO_SECRET_KEY"
DEBUG = flag(os.environ.get("DJANGO_DEBUG", ""))
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "students",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Ends sessions that began before the latest logout run (works on every session engine).
    "students.middleware.LogoutCutoffMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "lcstats.urls"
WSGI_APPLICATION = "lcstats.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # The banner before the nightly logout (off unless the schedule sets --warn-minutes).
                "students.warning.context",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}", BASE_DIR
    )
}
CACHES = {"default": cache_from_url(os.environ.get("CACHE_URL") or "locmem://", BASE_DIR)}

SESSION_ENGINE = session_engine(os.environ.get("SESSION_ENGINE") or "db")
SESSION_FILE_PATH = os.environ.get("SESSION_FILE_PATH") or None
LOGOUT_LOCK_LEASE_SECONDS = os.environ.get("LOGOUT_LOCK_LEASE_SECONDS")  # checked by students.lock
# The "Your sessions" index (students.session_index) keeps no IP address unless this asks for one.
LOGOUT_SESSIONS_STORE_IP = flag(os.environ.get("LOGOUT_SESSIONS_STORE_IP", ""))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "statistics"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Application logs ("Track in application logs" in the reference): one line per logout run.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "students": {"handlers": ["stderr"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO"), "propagate": False},
    },
}
