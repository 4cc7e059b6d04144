"""The one list of tests that may be skipped (tests/allowed_skips.txt) and the rule the root
conftest.py's hooks apply with it: a skip whose node id and reason the list does not name fails."""
from fnmatch import fnmatchcase
from pathlib import Path

ALLOWED_SKIPS_FILE = Path(__file__).resolve().parents[2] / "tests" / "allowed_skips.txt"


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
