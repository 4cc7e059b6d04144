"""The wrapper script as cron runs it: rendered from the role's template by real Ansible, then run for
real against this repository's Django project (SQLite in a temp folder), with cron's bare environment
and cron's `SCRIPT >> LOG 2>&1` line. Checks the log lines and exit codes of the shared contract."""

import fcntl
import pwd
import re
import subprocess

import pytest

from tests.support.wrapper import (  # noqa: F401 (migrated_database, mailbox_user, site: fixtures)
    CREATE_SESSIONS, TIMESTAMP, log_lines, mailbox_user, manage, migrated_database, render_wrapper, run_as_cron,
    session_count, site, wait_for_file,
)


def test_rendered_wrapper_starts_with_the_shebang_and_the_managed_comment(tmp_path):
    lines = render_wrapper(tmp_path).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "Ansible managed" in lines[1] + lines[2]
    assert lines[-1] == 'main "$@"'


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "nightly_logout_keep_staff": True,
            "nightly_logout_exclude_users": ["admin", "o'neil"],
            "nightly_logout_environment": {"DATABASE_URL": "postgres://u:p@db:5432/lcstats", "CACHE_URL": "redis://r:6379/0"},
            "nightly_logout_mail_on_failure": True,
            "nightly_logout_timezone": "Europe/Dublin",
            "nightly_logout_due_at": "02:00",
            "nightly_logout_ping_url": "https://hc-ping.com/0f6bd5a2-5d2f-4f5e-9d0e-6b4f3c1f7a21",
            "nightly_logout_ping_body": False,
            "nightly_logout_textfile_dir": "/var/lib/prometheus/node-exporter",
        },
    ],
    ids=["defaults", "every-option"],
)
def test_rendered_wrapper_is_shellcheck_clean(tmp_path, options):
    script = render_wrapper(tmp_path, **options)
    result = subprocess.run(["shellcheck", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_success_logs_the_reference_lines_and_logs_everyone_out(tmp_path, site):
    assert session_count(site) == 2
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})

    assert run_as_cron(script, log) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Running daily user logout\.\.\.", lines[0]), lines
    assert "Successfully logged out all users by deleting 2 session(s)" in lines
    assert "Also cleaned up 0 expired session(s)" in lines
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", lines[-1]), lines
    assert session_count(site) == 0


def test_options_reach_the_command(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(
        tmp_path, nightly_logout_environment={"DATABASE_URL": site}, nightly_logout_exclude_users=["alice"]
    )

    assert run_as_cron(script, log) == 0

    assert "Successfully logged out all users by deleting 1 session(s)" in log_lines(log)
    assert session_count(site) == 1


def test_a_failing_command_logs_its_exit_code_and_the_wrapper_returns_it(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(
        tmp_path, nightly_logout_environment={"DATABASE_URL": site}, nightly_logout_exclude_users=["nobody-by-this-name"]
    )

    status = run_as_cron(script, log)

    assert status == 1
    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Running daily user logout\.\.\.", lines[0]), lines
    assert any("nobody-by-this-name" in line for line in lines), lines
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout failed with exit code 1", lines[-1]), lines
    assert not any("completed successfully" in line for line in lines)
    assert session_count(site) == 2


def test_a_scheduled_run_the_command_skips_logs_its_reason_and_exits_0(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    # The first run stands for the latest recorded scheduled time, the next one finds it done (exit 3).
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})
    assert run_as_cron(script, log) == 0
    assert session_count(site) == 0
    manage(site, "shell", "--command", CREATE_SESSIONS.replace('"alice", "bob"', '"carol",'))

    assert run_as_cron(script, log) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout skipped: Already logged out .* by host .*", lines[-1]), lines
    assert lines[-2] == lines[-1].split("skipped: ", 1)[1]  # the command's own line, just before
    assert len([line for line in lines if line.endswith("Daily logout completed successfully")]) == 1  # the first run
    assert session_count(site) == 1


def test_by_hand_without_scheduled_it_logs_everyone_out_now(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})
    assert run_as_cron(script, log) == 0  # the scheduled run of the latest scheduled time
    manage(site, "shell", "--command", CREATE_SESSIONS.replace('"alice", "bob"', '"carol",'))

    # The reference's manual test: the script by hand logs out whoever is in now, scheduled time done or not.
    assert run_as_cron(script, log, by_hand=True) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", lines[-1]), lines
    assert "Successfully logged out all users by deleting 1 session(s)" in lines
    assert session_count(site) == 0


def test_an_unknown_argument_is_refused_with_2_and_runs_nothing(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})

    assert run_as_cron(script, log, "--now", by_hand=True) == 2

    assert log_lines(log) == [f"Usage: {script} [--scheduled]"]
    assert session_count(site) == 2


def test_a_run_that_finds_the_lock_held_skips_with_76(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site})

    with open(tmp_path / "logs" / ".daily_logout.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # an earlier run still going
        status = run_as_cron(script, log)

    assert status == 76
    lines = log_lines(log)
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"{TIMESTAMP}: Another daily logout is still running; skipping", lines[0]), lines
    assert session_count(site) == 2
    # Once the lock is free the next run goes ahead.
    assert run_as_cron(script, log) == 0


@pytest.mark.parametrize(
    "variable, missing_file",
    [("nightly_logout_resolved_venv_dir", "bin/python"), ("nightly_logout_project_dir", "manage.py")],
    ids=["virtualenv", "project"],
)
def test_a_missing_project_or_virtualenv_exits_78_naming_the_path(tmp_path, variable, missing_file):
    log = tmp_path / "logs" / "daily_logout.log"
    missing = tmp_path / "not-there"
    script = render_wrapper(tmp_path, **{variable: str(missing)})

    assert run_as_cron(script, log) == 78

    assert re.fullmatch(rf"{TIMESTAMP}: .*{re.escape(str(missing / missing_file))} not found", log_lines(log)[-1])


def test_a_failure_mails_the_tail_of_the_log_through_the_local_mta(tmp_path, site, mailbox_user):
    name, mailbox = mailbox_user
    assert pwd.getpwnam(name)
    log = tmp_path / "logs" / "daily_logout.log"
    script = render_wrapper(
        tmp_path,
        nightly_logout_environment={"DATABASE_URL": site},
        nightly_logout_exclude_users=["nobody-by-this-name"],
        nightly_logout_mail_on_failure=True,
        nightly_logout_mail_to=name,
    )

    assert run_as_cron(script, log) == 1

    mail = wait_for_file(mailbox)
    assert "Subject: LCAI Maths: Daily logout failed" in mail
    assert "failed with exit code 1" in mail
    assert "Running daily user logout..." in mail  # the tail of the log
    assert "nobody-by-this-name" in mail


# "Keep me signed in" (students/remember.py): the role passes --keep-remembered to the job only when on.
def test_the_role_passes_keep_remembered_to_the_job_only_when_on(tmp_path):
    options = {}
    for state in (True, False):
        (tmp_path / str(state)).mkdir()
        script = render_wrapper(tmp_path / str(state), nightly_logout_keep_remembered=state)
        options[state] = re.search(r"COMMAND_OPTIONS=\((.*?)\n\)", script.read_text(), re.S)[1].split()
        assert subprocess.run(["shellcheck", script], capture_output=True).returncode == 0
    assert options == {True: ["--keep-remembered"], False: []}
