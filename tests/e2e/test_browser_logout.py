"""The reference's "Test logout manually", done for real: a student and a teacher (staff) log in with
headless Chromium, the nightly job runs as the role installed it, and a reload shows the student the
login page while the teacher, kept by --keep-staff, still sees their page."""
import re

# The cron line the role writes: "<minute> <hour> * * * <command>".
CRON_LINE = re.compile(r"^(\S+) (\S+) \* \* \* (.+)$")


def log_in(browser, site, username):
    """A fresh browser profile (its own cookie jar) that logs in through the login form."""
    page = browser.new_context().new_page()
    page.goto(f"{site.url}/")
    assert page.title() == "Log in", "an anonymous visitor should be sent to the login page"
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", site.password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert_on_statistics_page(page, username)
    return page


def assert_on_statistics_page(page, username):
    assert page.title() == "My statistics", f"expected the statistics page, got {page.title()!r} at {page.url}"
    assert page.inner_text("#username") == username


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

    command = scheduled_command(nightly_job)
    assert str(nightly_job.script_path) in command and str(nightly_job.log_path) in command
    result = nightly_job.run_like_cron(command)  # what cron runs at 02:00, as cron runs it
    log = nightly_job.log_path.read_text()
    assert result.returncode == 0, f"the nightly job exited {result.returncode}; log:\n{log}{result.stderr}"
    assert re.search(r"^\S+: Running daily user logout\.\.\.$", log, re.M), log
    # Two sessions exist; --keep-staff spares the teacher's.
    assert "Successfully logged out all users by deleting 1 session(s)" in log, log
    assert "Kept 1 session(s) (users: all staff)" in log, log
    assert re.search(r"^\S+: Daily logout completed successfully$", log, re.M), log

    student.reload()
    assert student.title() == "Log in", f"the student should be logged out, got {student.title()!r}"
    assert student.url.startswith(f"{site.url}/accounts/login/")
    screenshot(student, "3-student-after-nightly-job")

    teacher.reload()
    assert_on_statistics_page(teacher, "teacher")
    screenshot(teacher, "4-teacher-after-nightly-job")
