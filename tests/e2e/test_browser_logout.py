"""The reference's "Test logout manually", done for real: a student and a teacher (staff) log in with
headless Chromium, the role's cron line is run by hand (as ./setup.sh's "Run it now" prints it), the
student's session is gone from storage and a reload shows the login page, while the teacher, kept by
--keep-staff, still sees their page. Then the same with no job
at all: the site's own clock cutoff at a recorded scheduled time."""
import datetime as dt
import json
import re
import time

from tests.support.browser import assert_on_statistics_page, log_in, session_key
from tests.support.site import stored

# The cron line the role writes: "<minute> <hour> * * * <command>".
CRON_LINE = re.compile(r"^(\S+) (\S+) \* \* \* (.+)$")


def scheduled_command(job):
    """The command the role put in the user's crontab under the job name "nightly_logout"."""
    crontab = job.crontab()
    lines = crontab.splitlines()
    marker = lines.index("#Ansible: nightly_logout")
    minute, hour, command = CRON_LINE.match(lines[marker + 1]).groups()
    assert (minute, hour) == ("0", "2"), f"default schedule should be 02:00, crontab:\n{crontab}"
    return command


def test_nightly_logout_ends_the_student_session_and_keeps_staff(browser, site, nightly_job, screenshot):
    student = log_in(browser, site, "student")
    screenshot(student, "1-student-signed-in")
    teacher = log_in(browser, site, "teacher")
    screenshot(teacher, "2-teacher-signed-in")
    student_key, teacher_key = session_key(student), session_key(teacher)

    command = scheduled_command(nightly_job)
    assert str(nightly_job.script_path) in command and str(nightly_job.log_path) in command
    assert " --scheduled >> " in command, command
    # Cron's line by hand, as ./setup.sh's "Run it now" prints it: without --scheduled the wrapper logs
    # everyone out now (with it, this soon after the role recorded the schedule, the run is not due yet).
    result = nightly_job.run_like_cron(command.replace(" --scheduled >> ", " >> "))
    log = nightly_job.log_path.read_text()
    assert result.returncode == 0, f"the nightly job exited {result.returncode}; log:\n{log}{result.stderr}"
    assert re.search(r"^\S+: Running daily user logout\.\.\.$", log, re.M), log
    # Two sessions exist; --keep-staff spares the teacher's.
    assert "Successfully logged out all users by deleting 1 session(s)" in log, log
    assert "Kept 1 session(s) (users: all staff)" in log, log
    assert re.search(r"^\S+: Daily logout completed successfully$", log, re.M), log
    # Storage first, before any request could let the cutoff middleware hide a purge that missed it.
    assert not stored(site, student_key), "the student's session should be gone from storage"
    assert stored(site, teacher_key), "the teacher's session should still be stored"

    student.reload()
    assert student.title() == "Log in", f"the student should be logged out, got {student.title()!r}"
    assert student.url.startswith(f"{site.url}/accounts/login/")
    screenshot(student, "3-student-after-nightly-job")

    teacher.reload()
    assert_on_statistics_page(teacher, "teacher")
    screenshot(teacher, "4-teacher-after-nightly-job")


def test_the_site_logs_out_at_the_scheduled_time_with_no_job_at_all(browser, site, screenshot):
    """The clock cutoff (issue 14): a schedule is recorded, no job ever runs; after the scheduled
    time the student's reload shows the login page (and the session is gone from storage) while
    the teacher, kept by the schedule's --keep-staff, still sees their page."""
    def runs():
        return site.manage("shell", "-v", "0", "-c",
                      "from students.models import LogoutRun; print(LogoutRun.objects.count())").strip()

    student = log_in(browser, site, "student")
    teacher = log_in(browser, site, "teacher")
    runs_before = runs()
    now = dt.datetime.now(dt.UTC)
    instant = (now + dt.timedelta(seconds=15 + 60)).replace(second=0, microsecond=0)  # 15-75 s ahead
    shown = json.loads(site.manage("logout_schedule", "--set", f"{instant:%H:%M}", "--timezone", "UTC",
                              "--keep-staff", "--scheduler", "none", "--json"))
    assert shown["changed"] and shown["next_instant"] == instant.isoformat(), shown
    student.reload()
    assert_on_statistics_page(student, "student")  # recording logs nobody out on the spot
    screenshot(student, "5-student-before-the-scheduled-time")
    time.sleep(max(0.0, (instant - dt.datetime.now(dt.UTC)).total_seconds()) + 1)

    student_key, teacher_key = session_key(student), session_key(teacher)
    assert stored(site, student_key), "the student's session should still be stored before the next request"
    student.reload()
    assert student.title() == "Log in", f"the student should be logged out, got {student.title()!r}"
    assert student.url.startswith(f"{site.url}/accounts/login/")
    assert not stored(site, student_key), "the old session should be gone from storage"
    screenshot(student, "6-student-after-the-scheduled-time-no-job")

    teacher.reload()
    assert_on_statistics_page(teacher, "teacher")
    assert stored(site, teacher_key)
    screenshot(teacher, "7-teacher-after-the-scheduled-time-no-job")
    assert runs() == runs_before, "no logout job may have run in this test"
    site.manage("logout_schedule", "--clear")
