"""The wrapper's own failures, each with its exit status, its log line and (mail hook on) its mail:
the lock folder missing (78), another run holding the lock (76), the log folder missing or not
writable, and the database lost part-way through the command's purge.

The wrapper is rendered by real Ansible and run as cron runs it (tests/support/wrapper.py);
the mail goes through this machine's MTA (exim4) to a local mailbox."""
import os
import re
import shlex
import shutil
import subprocess
import time

import pytest

from tests.support.faulty_run import SESSIONS, sessions_left, site_database, sql, wait_until_purging
from tests.support.servers import as_postgres, pg_bin, postgres
from tests.support.wrapper import (  # noqa: F401 (migrated_database, mailbox_user, site: fixtures)
    TIMESTAMP, log_lines, mailbox_user, migrated_database, render_wrapper, run_as_cron, session_count, site,
    wait_for_file,
)

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
CRON_ENV = {"HOME": "/root", "LOGNAME": "root", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}


def mailed_wrapper(tmp_path, mailbox_user, **overrides):
    name, mailbox = mailbox_user
    script = render_wrapper(tmp_path, nightly_logout_mail_on_failure=True, nightly_logout_mail_to=name, **overrides)
    return script, mailbox


def test_a_missing_lock_folder_exits_78_logs_it_and_mails_it(tmp_path, site, mailbox_user):
    log = tmp_path / "logs" / "daily_logout.log"
    missing = tmp_path / "no-such-folder"
    script, mailbox = mailed_wrapper(tmp_path, mailbox_user, nightly_logout_environment={"DATABASE_URL": site},
                                     nightly_logout_lock_path=str(missing / ".daily_logout.lock"))

    assert run_as_cron(script, log) == 78

    assert re.fullmatch(rf"{TIMESTAMP}: Cannot run the daily logout: lock folder {re.escape(str(missing))} not found",
                        log_lines(log)[-1]), log_lines(log)
    assert session_count(site) == 2, "nothing ran"
    mail = wait_for_file(mailbox)
    assert "failed with exit code 78" in mail
    assert f"lock folder {missing} not found" in mail


def test_a_held_lock_exits_76_logs_it_and_mails_it(tmp_path, site, mailbox_user):
    log = tmp_path / "logs" / "daily_logout.log"
    script, mailbox = mailed_wrapper(tmp_path, mailbox_user, nightly_logout_environment={"DATABASE_URL": site})
    lock = tmp_path / "logs" / ".daily_logout.lock"

    # An earlier run still going: another process holds the lock file (flock(1), as the wrapper takes it).
    with subprocess.Popen(["flock", str(lock), "sleep", "60"]) as holder:
        try:
            deadline = time.monotonic() + 10
            while subprocess.run(["flock", "--nonblock", str(lock), "true"]).returncode == 0:
                assert time.monotonic() < deadline, "the holder never took the lock"
                time.sleep(0.05)
            status = run_as_cron(script, log)
        finally:
            holder.kill()

    assert status == 76
    assert re.fullmatch(rf"{TIMESTAMP}: Another daily logout is still running; skipping", log_lines(log)[-1])
    assert session_count(site) == 2, "nothing ran"
    mail = wait_for_file(mailbox)
    assert "failed with exit code 76" in mail
    assert "Another daily logout is still running; skipping" in mail


def cron_line(script, log, user="root"):
    """cron's `SCRIPT >> LOG 2>&1` as `user`; returns (status, what cron would mail: the job's output)."""
    command = f"{shlex.quote(str(script))} >> {shlex.quote(str(log))} 2>&1"
    result = subprocess.run([RUNUSER, "-u", user, "--", "/bin/sh", "-c", command], env=CRON_ENV, cwd="/",
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_a_missing_log_folder_fails_before_the_wrapper_starts_and_says_so(tmp_path, site):
    # cron's shell opens the log before it starts the wrapper: nothing runs, the shell's complaint
    # (naming the log) is the job's output, which cron mails to MAILTO; the status is not 0.
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})
    log = tmp_path / "gone" / "daily_logout.log"

    status, output = cron_line(script, log)

    assert status != 0
    assert str(log) in output and "nonexistent" in output.lower(), output
    assert session_count(site) == 2, "nothing ran"


def test_an_unwritable_log_fails_before_the_wrapper_starts_and_says_so(tmp_path, site):
    if os.geteuid() != 0:
        pytest.fail("the test runs cron's line as another user: run the tests as root (as CI does)")
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})
    script.chmod(0o755)
    tmp_path.chmod(0o755)
    log = tmp_path / "logs" / "daily_logout.log"  # logs/ is root's, 0755: `nobody` cannot write there

    status, output = cron_line(script, log, user="nobody")

    assert status != 0
    assert str(log) in output and "permission denied" in output.lower(), output
    assert not log.exists()
    assert session_count(site) == 2, "nothing ran"


def test_the_database_lost_mid_run_fails_the_wrapper_says_what_was_done_and_mails_it(tmp_path, mailbox_user):
    with postgres(settings=("fsync=off",)) as server, site_database(server) as url:
        log = tmp_path / "logs" / "daily_logout.log"
        script, mailbox = mailed_wrapper(
            tmp_path, mailbox_user, nightly_logout_settings_module="tests.support.fault_settings",
            nightly_logout_environment={"DATABASE_URL": url, "FAULT_PAUSE_SECONDS": "1"},
        )
        data = sql(url, "SHOW data_directory")[0][0]
        wrapper = subprocess.Popen(["/bin/sh", "-c", f"{shlex.quote(str(script))} >> {shlex.quote(str(log))} 2>&1"],
                                   env=CRON_ENV, cwd="/")
        try:
            wait_until_purging(url, wrapper)
            deleted = SESSIONS - sessions_left(url)
            subprocess.run(as_postgres([f"{pg_bin()}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                           check=True, capture_output=True, timeout=60)
            status = wrapper.wait(timeout=120)
        finally:
            wrapper.kill()

    assert status == 1
    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout failed with exit code 1", lines[-1]), lines
    said = (f"CommandError: Database error after deleting {deleted} session(s); the others were not deleted and this "
            "run set no logout cutoff: ")
    assert any(line.startswith(said) for line in lines), lines
    mail = wait_for_file(mailbox)
    assert "failed with exit code 1" in mail
    assert said in mail


# A password with a percent-encoded @ (decoded, it reads Pa55@w0rd.secret), in a URL that names no database.
PASSWORD = "Pa55%40w0rd.secret"
MISTAKEN_URL = f"postgres://logout_user:{PASSWORD}@db.example:5432/?sslmode=require"


def test_a_mistaken_database_url_s_password_is_in_no_log_line_and_no_mail(tmp_path, mailbox_user):
    log = tmp_path / "logs" / "daily_logout.log"
    script, mailbox = mailed_wrapper(tmp_path, mailbox_user, nightly_logout_environment={"DATABASE_URL": MISTAKEN_URL})
    # Lines in the log's tail that hold the secret: an older release's error (the whole URL), and a
    # library's message quoting the password alone, decoded. The mail sends the tail: redacted.
    log.write_text(f"ImproperlyConfigured: DATABASE_URL {MISTAKEN_URL!r} names no database\n"
                   "FATAL: password Pa55@w0rd.secret does not match\n")
    before = len(log_lines(log))

    assert run_as_cron(script, log) == 1

    this_run = "\n".join(log_lines(log)[before:])
    assert "DATABASE_URL (postgres://db.example:5432/…) names no database" in this_run, this_run
    assert re.search(rf"(?m)^{TIMESTAMP}: Daily logout failed with exit code 1$", this_run), this_run
    assert not [leak for leak in (PASSWORD, "Pa55@w0rd", "logout_user") if leak in this_run], this_run
    mail = wait_for_file(mailbox)
    assert "failed with exit code 1" in mail and "names no database" in mail, mail
    assert "DATABASE_URL '[redacted]' names no database" in mail and "FATAL: password [redacted] does" in mail, mail
    assert not [leak for leak in (PASSWORD, "Pa55@w0rd", "w0rd.secret") if leak in mail], mail
