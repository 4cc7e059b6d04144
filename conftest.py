"""Root conftest: makes the real-server fixtures (tests/servers.py) available to every test, and fails
every skip that tests/allowed_skips.txt does not list with its reason (the project's rule: a skipped
test is a failure unless its reason is listed in one place)."""
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

# pytester: tests/test_allowed_skips.py runs pytest on throwaway test files.
pytest_plugins = ["tests.servers", "pytester"]

ALLOWED_SKIPS_FILE = Path(__file__).resolve().parent / "tests" / "allowed_skips.txt"


def allowed_skips(path: Path = ALLOWED_SKIPS_FILE) -> list[tuple[str, str]]:
    """The (node id pattern, reason) entries of the list; comments and blank lines left out."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, separator, reason = (part.strip() for part in line.partition("|"))
        if not separator or not pattern or not reason:
            raise ValueError(f"{path}:{number}: expected 'NODE_ID_PATTERN | REASON', got {line!r}")
        entries.append((pattern, reason))
    return entries


def skip_is_allowed(nodeid: str, reason: str, entries=None) -> bool:
    entries = allowed_skips() if entries is None else entries
    return any(fnmatchcase(nodeid, pattern) and reason == listed for pattern, listed in entries)


def skip_reason(report) -> str:
    """The reason a skip gave (pytest keeps it as 'Skipped: REASON' in longrepr), or an xfail's."""
    if hasattr(report, "wasxfail"):
        return report.wasxfail or "xfail"
    if isinstance(report.longrepr, tuple):
        message = report.longrepr[2]
        return message.removeprefix("Skipped: ")
    return str(report.longrepr)


def fail_unlisted_skip(report, nodeid: str) -> None:
    reason = skip_reason(report)
    if skip_is_allowed(nodeid, reason):
        return
    report.outcome = "failed"
    report.longrepr = (f"{nodeid} was skipped ({reason!r}), and tests/allowed_skips.txt does not list it with that "
                       "reason: make it run here, or list it as 'NODE_ID | REASON' saying why the skip is right")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.skipped:
        fail_unlisted_skip(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    if report.skipped:  # a module-level skip, e.g. pytest.importorskip
        fail_unlisted_skip(report, report.nodeid)


def pytest_terminal_summary(terminalreporter):
    allowed = [report for report in terminalreporter.stats.get("skipped", [])]
    if allowed:
        terminalreporter.section("skips allowed by tests/allowed_skips.txt")
        for report in allowed:
            terminalreporter.line(f"{report.nodeid}: {skip_reason(report)}")
