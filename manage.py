#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lcstats.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A mistake in the settings or the environment (lcstats/env.py names the variable): one line,
        # as a CommandError prints, not a traceback that pushes the run's start out of the failure mail.
        sys.exit(f"ImproperlyConfigured: {exc}")


if __name__ == "__main__":
    main()
