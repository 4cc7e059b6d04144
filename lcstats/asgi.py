"""ASGI entry point for the lcstats site."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lcstats.settings")
application = get_asgi_application()
