import argparse
import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, ProgrammingError
from django.utils import timezone

from students import schedule_store
from students.schedule import ScheduleError, local_time, parse_due_at, parse_zone
from students.selection import UnknownUsers


def _checked(parse, message):
    """An argparse type: the text when `parse` accepts it, else `message` with the text (exit 2)."""
    def check(text):
        try:
            parse(text)
        except ScheduleError:
            raise argparse.ArgumentTypeError(message.format(text=text)) from None
        return text
    return check


_hh_mm = _checked(parse_due_at, "must be a time HH:MM from 00:00 to 23:59, not {text!r}")
_zone = _checked(parse_zone, "{text!r} is not a known IANA time zone (e.g. Europe/Dublin)")


def _warn_minutes(text):
    """An argparse type: a whole number of minutes from 1 to schedule_store.WARN_MINUTES_MAX (else exit 2)."""
    if not text.strip().isdigit() or not 1 <= int(text) <= schedule_store.WARN_MINUTES_MAX:
        raise argparse.ArgumentTypeError(f"must be a whole number of minutes from 1 to "
                                         f"{schedule_store.WARN_MINUTES_MAX}, not {text!r}")
    return int(text)


def _max_session_age(text):
    """An argparse type: whole hours from 0 (off) to schedule_store.MAX_SESSION_AGE_HOURS_MAX (else exit 2)."""
    if not text.strip().isdigit() or int(text) > schedule_store.MAX_SESSION_AGE_HOURS_MAX:
        raise argparse.ArgumentTypeError(f"must be a whole number of hours from 1 to "
                                         f"{schedule_store.MAX_SESSION_AGE_HOURS_MAX} (0: off), not {text!r}")
    return int(text)


class Command(BaseCommand):
    help = (
        "Record the nightly logout's schedule in the site's database, so the site itself logs everyone "
        "out at each scheduled time (at their next request) even when no job runs, and a late job "
        "spares sessions that began after the time it stands for. Recording or changing it logs nobody "
        "out on the spot; cutoffs already passed stay in force. Exit status: 0 success, 1 failure, "
        "2 bad usage."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--set", type=_hh_mm, metavar="HH:MM", help="Record this daily local time (the main one).")
        action.add_argument("--show", action="store_true", help="Print what is recorded.")
        action.add_argument("--clear", action="store_true",
                            help="Remove the schedule (cutoffs already in force stay in force).")
        parser.add_argument("--also", type=_hh_mm, action="append", default=[], metavar="HH:MM",
                            help="Another daily local time (repeatable); with --set.")
        parser.add_argument("--timezone", type=_zone, metavar="ZONE",
                            help="IANA time zone of the times, e.g. Europe/Dublin (the host's own zone when the "
                                 "times are the host clock's); required with --set.")
        parser.add_argument("--scheduler", choices=schedule_store.SCHEDULERS, default="cron",
                            help="What runs the storage cleanup (default cron); 'none': the site cleans up itself.")
        parser.add_argument("--keep-staff", action="store_true", help="The clock cutoff keeps staff users logged in.")
        parser.add_argument("--exclude-user", action="append", default=[], metavar="USERNAME",
                            help="The clock cutoff keeps this user logged in (repeatable; must exist).")
        parser.add_argument("--keep-remembered", action="store_true",
                            help='The login page offers "Keep me signed in"; such sessions survive the clock '
                                 "cutoff (and runs with --keep-remembered) until SESSION_COOKIE_AGE after login.")
        parser.add_argument("--per-user-zones", action="store_true",
                            help="Log each user out at these local times in their own time zone (set on their "
                                 "time-zone page, first from their browser); users without one follow --timezone. "
                                 "The scheduler then fires hourly and each run stands for the zones whose time "
                                 "has passed.")
        parser.add_argument("--warn-minutes", type=_warn_minutes, metavar="N",
                            help="Signed-in pages warn of each logout from N minutes before it (1-720), with a "
                                 "live countdown; without it, no warning.")
        parser.add_argument("--max-session-age", type=_max_session_age, metavar="HOURS",
                            help="Log a session out at its first request more than HOURS after its login "
                                 "(1-8760), remembered ones included (OWASP ASVS 7.3.2); 0 or absent: no maximum.")
        parser.add_argument("--check", action="store_true",
                            help="Change nothing; report whether a real run would change the record.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")

    def handle(self, *args, **options):
        if options["set"] is None:
            misplaced = [name for name in ("also", "timezone", "keep_staff", "exclude_user", "warn_minutes",
                                                    "keep_remembered", "per_user_zones", "max_session_age")
                         if options[name]] + (["scheduler"] if options["scheduler"] != "cron" else [])
            if misplaced:
                raise CommandError(f"--{misplaced[0].replace('_', '-')} goes with --set", returncode=2)
        elif options["timezone"] is None:
            raise CommandError("--set needs --timezone ZONE (an IANA zone, e.g. Europe/Dublin)", returncode=2)
        try:
            if options["show"]:
                return self._show(options["json"])
            if options["clear"]:
                changed = schedule_store.clear_schedule(check=options["check"])
                schedule = schedule_store.stored_schedule()  # still there after --check
            else:
                changed, schedule = schedule_store.record_schedule(
                    options["set"], options["also"], zone_name=options["timezone"], scheduler=options["scheduler"],
                    keep_staff=options["keep_staff"], exclude_users=options["exclude_user"],
                    warn_minutes=options["warn_minutes"] or 0, keep_remembered=options["keep_remembered"],
                    per_user_zones=options["per_user_zones"],
                    max_session_age_hours=options["max_session_age"] or 0, check=options["check"])
        except (ScheduleError, UnknownUsers) as exc:
            raise CommandError(str(exc))
        except DatabaseError as exc:
            raise CommandError(_database_message(exc))
        if options["json"]:
            self.stdout.write(json.dumps({"changed": changed, **_view(schedule)},
                                         sort_keys=True))
            return
        verb = "Would record" if options["check"] else "Recorded"
        if options["clear"]:
            verb = "Would clear" if options["check"] else "Cleared"
            self.stdout.write(f"{verb} the logout schedule" if changed else "No logout schedule was recorded")
        elif changed:
            self.stdout.write(self.style.SUCCESS(f"{verb} the logout schedule: {_describe(schedule)}"))
        else:
            self.stdout.write(f"The logout schedule is already {_describe(schedule)}")

    def _show(self, as_json):
        schedule = schedule_store.stored_schedule()
        if as_json:
            self.stdout.write(json.dumps(_view(schedule), sort_keys=True))
            return
        if schedule is None:
            self.stdout.write("No logout schedule is recorded (logout_schedule --set HH:MM --timezone ZONE)")
            return
        zone = schedule.zone
        self.stdout.write(f"Logout schedule: {_describe(schedule)}")
        self.stdout.write(f"Recorded: {local_time(schedule.recorded_at, zone)}")
        now = timezone.now()
        for label, instant in (("Latest scheduled time", schedule.latest_instant(now)),
                               ("Next scheduled time", schedule.next_instant(now))):
            self.stdout.write(f"{label}: {local_time(instant, zone) if instant else 'none'}")


def _view(schedule):
    """The JSON view: {"schedule": {...} | null, "latest_instant": ISO | null, "next_instant": ISO | null}."""
    if schedule is None:
        return {"schedule": None, "latest_instant": None, "next_instant": None}
    now = timezone.now()
    latest, coming = schedule.latest_instant(now), schedule.next_instant(now)
    return {"schedule": schedule.as_dict(), "latest_instant": latest and latest.isoformat(),
            "next_instant": coming and coming.isoformat()}


def _describe(schedule):
    kept = ((["all staff"] if schedule.keep_staff else []) + list(schedule.excluded_usernames)
            + (["remembered sessions"] if schedule.keep_remembered else []))
    warning = f", warns {schedule.warn_minutes} minutes before" if schedule.warn_minutes else ""
    if schedule.max_session_age_hours:
        warning += f", ends sessions {schedule.max_session_age_hours} hours after login"
    where = (f"in each user's own time zone ({schedule.timezone} for users without one)"
             if schedule.per_user_zones else schedule.timezone)
    return (f"daily at {', '.join(f'{at:%H:%M}' for at in schedule.times)} {where}, "
            f"scheduler {schedule.scheduler}, keeps {', '.join(kept) if kept else 'nobody'}{warning}")


def _database_message(exc):
    text = " ".join(str(exc).split())
    if isinstance(exc, ProgrammingError) or "no such table" in text or "does not exist" in text:
        return f"The logout schedule table is missing: run `manage.py migrate` first ({text})"
    return f"Database error, nothing recorded: {text}"
