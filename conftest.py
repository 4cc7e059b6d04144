"""Root conftest: makes the real-server fixtures (tests/support/servers.py) available to every test, and fails
every skip that tests/allowed_skips.txt does not list with its reason (the project's rule: a skipped
test is a failure unless its reason is listed in one place; the rule itself is tests/support/skips.py)."""
import pytest

from tests.support.skips import fail_unlisted_skip, skip_reason

# pytester: tests/test_allowed_skips.py runs pytest on throwaway test files.
pytest_plugins = ["tests.support.servers", "pytester"]


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
