"""Run this whole Django suite again with PostgreSQL (a real server from tests/support/servers.py) as the
database, so every test above, the lock and the process-level exit codes included, also holds on
PostgreSQL. One `pytest` command thus covers SQLite and PostgreSQL. The run reports how many tests
passed and were skipped there, and fails on any skip tests/allowed_skips.txt does not list with its reason
(the root conftest.py's hook fails it inside that run too; this checks its report independently)."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tests.support import REPO_DIR
from tests.support.skips import skip_is_allowed

THIS_FILE = Path(__file__).relative_to(REPO_DIR).as_posix()


def node_id(testcase) -> str:
    """The pytest node id of a JUnit (xunit1) testcase: file, then any class, then the test's name."""
    path = testcase.get("file")
    module = path.removesuffix(".py").replace("/", ".")
    classes = testcase.get("classname").removeprefix(module).strip(".")
    return "::".join([path, *filter(None, classes.split(".")), testcase.get("name")])


def outcomes(report: Path) -> dict:
    """{'passed': [...], 'skipped': [(node id, reason)], 'failed': [...]} from a JUnit XML report."""
    found = {"passed": [], "skipped": [], "failed": []}
    for testcase in ElementTree.parse(report).getroot().iter("testcase"):
        skipped = testcase.find("skipped")
        if testcase.find("failure") is not None or testcase.find("error") is not None:
            found["failed"].append(node_id(testcase))
        elif skipped is not None:
            found["skipped"].append((node_id(testcase), skipped.get("message", "")))
        else:
            found["passed"].append(node_id(testcase))
    return found


def test_the_django_suite_passes_on_postgresql(postgres_server, tmp_path):
    report = tmp_path / "postgresql.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "students/tests", "-q", "-p", "no:cacheprovider",
         "--deselect", THIS_FILE, f"--junitxml={report}", "-o", "junit_family=xunit1"],
        cwd=REPO_DIR, env={**os.environ, "DATABASE_URL": postgres_server},
        capture_output=True, text=True, timeout=1800,
    )
    assert report.exists(), f"the PostgreSQL run wrote no report:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    found = outcomes(report)
    print(f"PostgreSQL run: {len(found['passed'])} passed, {len(found['skipped'])} skipped, "
          f"{len(found['failed'])} failed")
    for nodeid, reason in found["skipped"]:
        print(f"  skipped {nodeid}: {reason}")
    assert result.returncode == 0, f"the suite failed on PostgreSQL:\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert found["passed"] and not found["failed"]
    unexpected = [(nodeid, reason) for nodeid, reason in found["skipped"] if not skip_is_allowed(nodeid, reason)]
    assert not unexpected, f"skips on PostgreSQL that tests/allowed_skips.txt does not list: {unexpected}"
