"""The wrapper's monitoring hooks, run for real as cron runs them (tests/test_wrapper.py renders the role's
templates with real Ansible and runs the real Django command): Healthchecks-style pings against a local
stand-in of the documented pinging API (tests/healthchecks_standin.py), and the Prometheus textfile,
read with prometheus_client's own parser."""

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.healthchecks_standin import StandInHealthchecks
from tests.servers import free_port
from tests.test_wrapper import (  # noqa: F401 (fixtures)
    CREATE_SESSIONS,
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
# The bound the role README states for one ping: (retries + 1) * timeout + retries * 1 s of retry delay.
PING_WORST_SECONDS = (1 + 1) * 2 + 1


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
        assert run_as_cron(script, log) == 0
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
    body = monitor.pings[1].body.decode()
    assert re.search(rf"(?m)^{TIMESTAMP}: Daily logout failed with exit code 1$", body), body
    assert "[redacted]" in body  # the command named the unknown user ...
    assert SECRET not in body  # ... whose name is a value of nightly_logout_environment
    assert site not in body
    assert SECRET in log.read_text()  # the log on the host keeps it
    assert session_count(site) == 2


def test_the_body_is_the_last_10_kb_and_can_be_turned_off(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    many = [f"user-{n:04d}-{'x' * 40}" for n in range(400)]  # an unknown-user error of about 20 kB
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_exclude_users=many)
        assert run_as_cron(script, log) == 1
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_ping_body=False)
        assert run_as_cron(script, log) == 0

    failed, succeeded = monitor.pings[1], monitor.pings[3]
    assert len(log.read_bytes()) > 20_000
    assert 10_000 <= len(failed.body) <= 10_240
    assert failed.body.decode().rstrip("\n").endswith("Daily logout failed with exit code 1")
    assert (succeeded.signal, succeeded.body) == ("0", b"")


def test_a_skipped_run_sends_log_with_its_reason_never_0(tmp_path, site):
    log = tmp_path / "logs" / "daily_logout.log"
    due = {"nightly_logout_timezone": "UTC", "nightly_logout_due_at": "00:00"}
    with StandInHealthchecks() as monitor:
        script = pinging(tmp_path, site, monitor.ping_url, **due)
        assert run_as_cron(script, log) == 0  # the day's run
        assert run_as_cron(script, log) == 0  # a second firing: already done, skipped
        # The same with the body off: the reason alone.
        script = pinging(tmp_path, site, monitor.ping_url, nightly_logout_ping_body=False, **due)
        assert run_as_cron(script, log) == 0

    assert monitor.signals() == ["start", "0", "start", "log", "start", "log"]
    for skipped in monitor.pings[3], monitor.pings[5]:
        assert skipped.rid == monitor.pings[monitor.pings.index(skipped) - 1].rid
        assert re.search(rf"(?m)^{TIMESTAMP}: Daily logout skipped: Already logged out today at ", skipped.body.decode())
    assert b"Running daily user logout" not in monitor.pings[5].body


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
    variables = {"nightly_logout_environment": {"DATABASE_URL": site}, "nightly_logout_textfile_dir": str(textfile),
                 "nightly_logout_timezone": "UTC", "nightly_logout_due_at": "00:00"}

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

    # A failure keeps the last success's time.
    manage(site, "shell", "--command", CREATE_SESSIONS.replace('"alice", "bob"', '"carol",'))
    variables.update(nightly_logout_timezone="", nightly_logout_exclude_users=["nobody-by-this-name"])
    assert run_as_cron(render_wrapper(tmp_path, **variables), log) == 1
    failed = metrics(textfile)
    assert failed["nightly_logout_last_exit_status"] == 1
    assert failed["nightly_logout_last_success_timestamp_seconds"] == success["nightly_logout_last_success_timestamp_seconds"]
    assert failed["nightly_logout_last_run_timestamp_seconds"] > skipped["nightly_logout_last_run_timestamp_seconds"]
    assert failed["nightly_logout_last_run_deleted_sessions"] == 0
    assert [path.name for path in textfile.iterdir()] == ["nightly_logout.prom"]  # no temporary file left

    # Kept sessions are counted.
    variables.update(nightly_logout_exclude_users=["carol"])
    assert run_as_cron(render_wrapper(tmp_path, **variables), log) == 0
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
