"""The root conftest.py's rule, run for real: pytest on a throwaway project holding a copy of that
conftest.py and of the rule it imports (tests/support/skips.py), its own tests/allowed_skips.txt and a
test file. A skip passes only when the list names the test with the very reason the skip gives, and the
run then prints that reason."""
import shutil
from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"
SKIPS_RULE = Path(__file__).resolve().parent / "support" / "skips.py"

TESTS = """
import pytest

def test_skipped_in_the_body():
    pytest.skip("no widget here")

@pytest.mark.skipif(True, reason="marked off")
def test_skipped_by_a_mark():
    pass

def test_that_runs():
    pass
"""


@pytest.fixture
def project(pytester):
    # The copy without the real-server plugin, which lives in this repository's tests package.
    conftest = ROOT_CONFTEST.read_text().replace('"tests.support.servers", ', "")
    assert conftest != ROOT_CONFTEST.read_text(), "the root conftest.py no longer loads tests.support.servers as expected"
    pytester.makeconftest(conftest)
    (pytester.path / "tests" / "support").mkdir(parents=True)
    (pytester.path / "tests" / "support" / "__init__.py").touch()
    shutil.copy(SKIPS_RULE, pytester.path / "tests" / "support" / "skips.py")
    pytester.makepyfile(test_things=TESTS)

    def run(*allowed_lines):
        (pytester.path / "tests/allowed_skips.txt").write_text("# comment\n" + "".join(f"{line}\n" for line in allowed_lines))
        return pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider", "-p", "no:django")
    return run


def test_an_unlisted_skip_fails_the_run(project):
    result = project()
    assert result.ret != 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0 and outcomes["passed"] == 1
    assert outcomes.get("failed", 0) + outcomes.get("errors", outcomes.get("error", 0)) == 2, outcomes
    result.stdout.fnmatch_lines(["*test_skipped_in_the_body was skipped ('no widget here'), and tests/allowed_skips.txt"
                                 " does not list it with that reason*"])


def test_a_listed_skip_passes_and_prints_its_listed_reason(project):
    result = project("test_things.py::test_skipped_in_the_body | no widget here",
                     "test_things.py::test_skipped_by_* | marked off")
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 1, "skipped": 2}
    result.stdout.fnmatch_lines(["*skips allowed by tests/allowed_skips.txt*",
                                 "test_things.py::test_skipped_in_the_body: no widget here"])


def test_a_listed_test_skipped_for_another_reason_fails(project):
    result = project("test_things.py::test_skipped_in_the_body | no gadget here",
                     "test_things.py::test_skipped_by_a_mark | marked off")
    assert result.ret != 0
    assert result.parseoutcomes()["failed"] == 1
