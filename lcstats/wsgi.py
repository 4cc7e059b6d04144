"""WSGI entry point for the lcstats site."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lcstats.settings")
application = get_wsgi_application()
