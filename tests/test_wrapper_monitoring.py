"""The wrapper's monitoring hooks, run for real as cron runs them (tests/support/wrapper.py renders the role's
templates with real Ansible and runs the real Django command): Healthchecks-style pings against a local
stand-in of Healthchecks' pinging API (tests/support/healthchecks_standin.py: the real server is not installable
from the package registries; the stand-in lists where it differs), which records what it received and
keeps the check's state as the server does, and the Prometheus textfile, read with prometheus_client's
own parser."""

import re
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.healthchecks_standin import StandInHealthchecks
from tests.support.servers import free_port
from tests.support.wrapper import (  # noqa: F401 (fixtures)
    CREATE_SESSIONS,
    REPO_DIR,
    TIMESTAMP,
    log_lines,
    manage,
    migrated_database,
    render_wrapper,
    run_as_cron,
    session_count,
    site,
)

# A value of nightly_logout_environment that the command prints (as an unknown --exclude-user): it is in
# the log on the host, and must never be in a ping's body.
SECRET = "s3cret-token-4f1c9e"
TIMING = {"nightly_logout_ping_timeout": 2, "nightly_logout_ping_retries": 1}
# The bound the role README states for one ping: (retries + 1) * timeout + curl's backoff (1 s, then doubling).
PING_WORST_SECONDS = (1 + 1) * 2 + (2**1 - 1)


def pinging(tmp_path, site, standin_url, **overrides):
    variables = {"nightly_logout_environment": {"DATABASE_URL": site}, "nightly_logout_ping_url": standin_url}
    variables.update(overrides)
    return render_wrapper(tmp_path, **variables)


def test_a_success_pings_start_then_0_with_one_run_id_and_the_log_as_body(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url)
        assert run_as_cron(script, log) == 0

    start, end = monitor.pings
    assert (start.signal, end.signal) == ("start", "0")
    assert start.rid and start.rid == end.rid
    assert start.body == b""
    assert end.kind == "success" and 0 < end.duration < 60
    assert monitor.status() == "up" and not monitor.running()
    body = end.body.decode()
    assert "Successfully logged out all users by deleting 2 session(s)" in body
    assert re.search(rf"(?m)^{TIMESTAMP}: Daily logout completed successfully$", body), body
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", log_lines(log)[-1])
    assert session_count(site) == 0


def test_each_run_has_its_own_run_id(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url)
        assert run_as_cron(script, log) == 0
        assert run_as_cron(script, log, by_hand=True) == 0  # the scheduled time is done: by hand, so it runs
    rids = [ping.rid for ping in monitor.pings]
    assert rids[0] == rids[1] and rids[2] == rids[3] and rids[0] != rids[2]


def test_a_failure_pings_its_exit_status_with_the_log_and_no_secret(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks() as monitor:
        script = pinging(
            tmp_path, site, monitor.ping_url, nightly_logout_exclude_users=[SECRET],
            nightly_logout_environment={"DATABASE_URL": site, "LOGOUT_TEST_TOKEN": SECRET},
        )
        assert run_as_cron(script, log) == 1

    assert monitor.signals() == ["start", "1"]
    assert (monitor.pings[1].kind, monitor.pings[1].exit_status, monitor.status()) == ("fail", 1, "down")
    assert monitor.pings[1].rid == monitor.pings[0].rid and monitor.pings[1].duration is not None
    body = monitor.pings[1].body.decode()
    assert re.search(rf"(?m)^{TIMESTAMP}: Daily logout failed with exit code 1$", body), body
    assert "[redacted]" in body  # the command named the unknown user ...
    assert SECRET not in body  # ... whose name is a value of nightly_logout_environment
    assert site not in body
    assert SECRET in log.read_text()  # the log on the host keeps it
    assert session_count(site) == 2


UNKNOWN_MANY = [f"user-{n:04d}-{'x' * 40}" for n in range(400)]  # an unknown-user error of about 20 kB
CUT_NOTE = r"\[cut: the first bytes of \d+; the monitor keeps {limit}\. The whole log: .*daily_logout\.log on .*\]"


@pytest.mark.parametrize("limit", [10_000, 3_000])
def test_the_body_is_the_end_of_the_log_within_the_monitors_ping_body_limit(tmp_path, site, limit):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks(body_limit=limit) as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_exclude_users=UNKNOWN_MANY)
        assert run_as_cron(script, log) == 1

    assert len(log.read_bytes()) > 20_000
    failed = monitor.pings[1].body.decode()
    # The server keeps a body's first `limit` bytes: what it kept must end with the run's last line ...
    assert limit - 200 <= len(monitor.pings[1].body) <= limit
    assert failed.rstrip("\n").endswith("Daily logout failed with exit code 1"), failed[-300:]
    # ... and say it is not the whole log.
    assert re.fullmatch(CUT_NOTE.format(limit=limit), failed.splitlines()[0]), failed.splitlines()[0]


def test_a_short_body_is_whole_and_the_body_can_be_turned_off(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_exclude_users=["nobody-by-this-name"])
        assert run_as_cron(script, log) == 1
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_ping_body=False)
        assert run_as_cron(script, log) == 0

    failed, succeeded = monitor.pings[1], monitor.pings[3]
    assert failed.body.decode().startswith(log_lines(log)[0]) and b"[cut:" not in failed.body
    assert (succeeded.signal, succeeded.body) == ("0", b"")


def test_a_firing_with_nothing_due_sends_nothing_and_logs_one_line(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks(grace=5, period=86400) as monitor:
        script = pinging(tmp_path, site, monitor.ping_url)
        assert run_as_cron(script, log) == 0  # the day's run
        day_run = log_lines(log)
        for _ in range(3):  # later firings: already done
            assert run_as_cron(script, log) == 0

    # The monitor saw the day's run only, closed: up now, and still up after the grace time.
    assert monitor.signals() == ["start", "0"]
    assert not monitor.running()
    assert monitor.status() == "up" and monitor.status(at=time.time() + 60) == "up"
    # The three firings: the skip once (the usual three lines), not three times.
    lines = log_lines(log)
    assert lines[: len(day_run)] == day_run
    assert len(lines) == len(day_run) + 3, lines
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout skipped: Already logged out for .*", lines[-1]), lines
    assert lines[-2] == lines[-1].split("skipped: ", 1)[1]  # the command's own line, just before


def test_a_failure_to_ask_whether_it_is_due_is_the_runs_failure_without_a_start(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    manage(site, "logout_schedule", "--clear")  # a scheduled run needs a recorded schedule
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url)
        assert run_as_cron(script, log) == 1

    assert monitor.signals() == ["1"]
    assert monitor.status() == "down" and not monitor.running()
    assert b"no logout schedule is recorded" in monitor.pings[0].body
    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout failed with exit code 1", lines[-1]), lines
    assert session_count(site) == 2


def ping(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200


def test_an_overlapping_firing_exits_76_with_a_log_event_and_leaves_the_running_one_alone(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    lock = tmp_path / "logs" / ".daily_logout.lock"
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url)
        # The earlier run: it pinged /start and holds the lock.
        earlier = str(uuid.uuid4())
        ping(f"{monitor.ping_url}/start?rid={earlier}")
        holder = subprocess.Popen(["flock", "--nonblock", str(lock), "sleep", "60"])
        try:
            time.sleep(0.5)
            assert holder.poll() is None, "could not take the lock"
            assert run_as_cron(script, log) == 76
        finally:
            holder.kill()
            holder.wait()
        running_meanwhile = monitor.running()
        ping(f"{monitor.ping_url}/0?rid={earlier}")  # the earlier run ends

    assert monitor.signals() == ["start", "log", "0"]
    overlap = monitor.pings[1]
    assert overlap.rid != earlier
    assert re.search(rf"(?m)^{TIMESTAMP}: Another daily logout is still running; skipping$", overlap.body.decode())
    assert running_meanwhile  # the earlier run was still the monitor's open run ...
    assert monitor.pings[2].duration is not None  # ... and its end closed it
    assert monitor.status() == "up"
    assert re.fullmatch(rf"{TIMESTAMP}: Another daily logout is still running; skipping", log_lines(log)[-1])
    assert session_count(site) == 2


def test_retries_back_off_as_curl_does(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks(unavailable=3) as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_ping_timeout=5, nightly_logout_ping_retries=3)
        assert run_as_cron(script, log) == 0

    assert monitor.signals() == ["start", "0"]  # the fourth attempt got through
    first, second, third, fourth = monitor.attempts[:4]
    # curl waits 1 s, 2 s, 4 s: each wait longer than the one before (a fixed delay would be 1 s each).
    assert second - first >= 0.9 and third - second >= 1.8 and fourth - third >= 3.6, monitor.attempts


def test_a_monitor_that_hangs_does_not_change_a_failures_exit_status_and_costs_a_bounded_time(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks(hold_seconds=120) as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_exclude_users=["nobody-by-this-name"],
                         **TIMING)
        started = time.monotonic()
        assert run_as_cron(script, log) == 1
        took = time.monotonic() - started

    assert took < 2 * PING_WORST_SECONDS + 30, took
    lines = log_lines(log)
    assert any(re.fullmatch(rf"{TIMESTAMP}: Could not ping the monitor \(1\): curl exit status 28", line) for line in lines)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout failed with exit code 1", lines[-1]), lines


def test_a_monitor_that_refuses_connections_does_not_fail_the_job(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    script = pinging(tmp_path, site, f"http://127.0.0.1:{free_port()}/0f6bd5a2-5d2f-4f5e-9d0e-6b4f3c1f7a21")

    assert run_as_cron(script, log) == 0

    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Could not ping the monitor \(start\): curl exit status 7", lines[0]), lines
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", lines[-1]), lines
    assert session_count(site) == 0


def test_a_monitor_that_hangs_delays_the_job_by_no_more_than_the_stated_timeout(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks(hold_seconds=120) as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, **TIMING)
        started = time.monotonic()
        assert run_as_cron(script, log) == 0
        took = time.monotonic() - started

    # Upper bound, not a benchmark: two pings at their worst, plus ample time for the command itself.
    assert took < 2 * PING_WORST_SECONDS + 30, took
    assert monitor.signals()[:2] == ["start", "start"]  # the retry
    lines = log_lines(log)
    assert any(re.fullmatch(rf"{TIMESTAMP}: Could not ping the monitor \(0\): curl exit status 28", line) for line in lines)
    assert re.fullmatch(rf"{TIMESTAMP}: Daily logout completed successfully", lines[-1]), lines
    assert session_count(site) == 0


def command_lines_and_environments():
    """Every process's command line and environment, as root sees them (ps shows the former)."""
    seen = []
    for proc in Path("/proc").glob("[0-9]*"):
        for name in ("cmdline", "environ"):
            try:
                seen.append((proc / name).read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass  # gone, or a kernel thread
    return seen


def test_the_ping_url_is_on_no_command_line_in_no_log_and_not_in_the_wrapper(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    with StandInHealthchecks(hold_seconds=30) as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_ping_timeout=30)
        run = threading.Thread(target=run_as_cron, args=(script, log))
        run.start()
        try:
            assert monitor.held.wait(30), "the wrapper never pinged"
            seen = command_lines_and_environments()  # while curl waits for the held /start
        finally:
            monitor.release()
            run.join(120)
        config = tmp_path / "logs" / ".daily_logout_ping.curl"
        # The file alone is a valid curl config: a success ping by hand.
        subprocess.run(["curl", "--silent", "--fail", "--config", config], check=True, timeout=30, capture_output=True)

    assert any("curl" in line and "--config -" in line for line in seen), "curl was not running"
    assert not [line for line in seen if monitor.check in line]
    assert monitor.check not in log.read_text()
    assert monitor.check not in script.read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert f'url = "{monitor.ping_url}"' in config.read_text()
    assert monitor.signals() == ["start", "0", "success"]


# The textfile collector's file.

def metrics(folder: Path) -> dict:
    text = (folder / "nightly_logout.prom").read_text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert all(family.type == "gauge" and family.documentation for family in families.values()), text
    return {name: family.samples[0].value for name, family in families.items()}


def test_metrics_after_a_success_a_failure_and_a_skip(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    variables = {"nightly_logout_environment": {"DATABASE_URL": site}, "nightly_logout_textfile_dir": str(textfile)}

    before = time.time()
    assert run_as_cron(render_wrapper(tmp_path, **variables), log) == 0
    after = time.time()
    success = metrics(textfile)
    assert before <= success["nightly_logout_last_run_timestamp_seconds"] <= after
    assert success["nightly_logout_last_success_timestamp_seconds"] == success["nightly_logout_last_run_timestamp_seconds"]
    assert success["nightly_logout_last_exit_status"] == 0
    assert 0 < success["nightly_logout_last_run_duration_seconds"] < after - before
    assert success["nightly_logout_last_run_deleted_sessions"] == 2
    assert success["nightly_logout_last_run_expired_sessions"] == 0
    assert success["nightly_logout_last_run_kept_sessions"] == 0

    # A skip (the day's run is done): only the last run's time moves.
    assert run_as_cron(render_wrapper(tmp_path, **variables), log) == 0
    skipped = metrics(textfile)
    assert skipped["nightly_logout_last_run_timestamp_seconds"] > success["nightly_logout_last_run_timestamp_seconds"]
    assert {k: v for k, v in skipped.items() if k != "nightly_logout_last_run_timestamp_seconds"} == {
        k: v for k, v in success.items() if k != "nightly_logout_last_run_timestamp_seconds"}

    # A failure keeps the last success's time (by hand: a scheduled firing now has nothing due, and
    # exits 0 before the command could fail).
    manage(site, "shell", "--command", CREATE_SESSIONS.replace('"alice", "bob"', '"carol",'))
    variables.update(nightly_logout_exclude_users=["nobody-by-this-name"])
    assert run_as_cron(render_wrapper(tmp_path, **variables), log, by_hand=True) == 1
    failed = metrics(textfile)
    assert failed["nightly_logout_last_exit_status"] == 1
    assert failed["nightly_logout_last_success_timestamp_seconds"] == success["nightly_logout_last_success_timestamp_seconds"]
    assert failed["nightly_logout_last_run_timestamp_seconds"] > skipped["nightly_logout_last_run_timestamp_seconds"]
    assert failed["nightly_logout_last_run_deleted_sessions"] == 0
    assert [path.name for path in textfile.iterdir()] == ["nightly_logout.prom"]  # no temporary file left

    # Kept sessions are counted.
    variables.update(nightly_logout_exclude_users=["carol"])
    # By hand: the scheduled time is done, a run now still purges.
    assert run_as_cron(render_wrapper(tmp_path, **variables), log, by_hand=True) == 0
    kept = metrics(textfile)
    assert (kept["nightly_logout_last_run_kept_sessions"], kept["nightly_logout_last_run_deleted_sessions"]) == (1, 0)
    assert oct((textfile / "nightly_logout.prom").stat().st_mode & 0o777) == "0o644"


def test_a_first_failure_has_no_success_time_and_an_unwritable_folder_does_not_fail_the_job(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site},
                            nightly_logout_textfile_dir=str(textfile), nightly_logout_exclude_users=["nobody-by-this-name"])
    assert run_as_cron(script, log) == 1
    assert "nightly_logout_last_success_timestamp_seconds" not in metrics(textfile)

    script = render_wrapper(tmp_path, nightly_logout_environment={"DATABASE_URL": site},
                            nightly_logout_textfile_dir=str(tmp_path / "not-there"))
    assert run_as_cron(script, log) == 0
    lines = log_lines(log)
    assert re.fullmatch(rf"{TIMESTAMP}: Could not write the metrics to .*/not-there/nightly_logout.prom", lines[-2]), lines
    assert lines[-1].endswith("Daily logout completed successfully")


REWORDED = {  # a later release's wording of the command's count lines
    "Successfully logged out all users by deleting {c.deleted_active} session(s)":
        "Logged everyone out: {c.deleted_active} session(s) gone",
    "Also cleaned up {c.deleted_expired} expired session(s)": "Expired sessions removed: {c.deleted_expired}",
    "Kept {c.kept} session(s) ({self._who(summary)})": "Left {c.kept} logged in ({self._who(summary)})",
}
CREATE_EXPIRED_SESSION = """
from datetime import timedelta
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
session = SessionStore()
session.create()
Session.objects.filter(session_key=session.session_key).update(expire_date=timezone.now() - timedelta(days=1))
"""


def reworded_project(folder: Path) -> Path:
    """A copy of this project whose command prints its counts in other words."""
    for name in ("lcstats", "students"):
        shutil.copytree(REPO_DIR / name, folder / name, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    shutil.copy(REPO_DIR / "manage.py", folder / "manage.py")
    command = folder / "students/management/commands/logout_all_users.py"
    text = command.read_text()
    for old, new in REWORDED.items():
        assert old in text, old
        text = text.replace(old, new)
    command.write_text(text)
    return folder


def test_metrics_do_not_depend_on_the_wording_of_the_commands_lines(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    manage(site, "shell", "--command", CREATE_EXPIRED_SESSION)
    project = reworded_project(tmp_path / "project")
    script = render_wrapper(tmp_path, nightly_logout_project_dir=str(project), nightly_logout_textfile_dir=str(textfile),
                            nightly_logout_environment={"DATABASE_URL": site}, nightly_logout_exclude_users=["alice"])

    assert run_as_cron(script, log) == 0

    text = log.read_text()
    assert "Logged everyone out: 1 session(s) gone" in text and "Successfully logged out" not in text, text
    figures = metrics(textfile)
    assert figures["nightly_logout_last_run_deleted_sessions"] == 1
    assert figures["nightly_logout_last_run_expired_sessions"] == 1
    assert figures["nightly_logout_last_run_kept_sessions"] == 1
    assert session_count(site) == 1  # alice's
