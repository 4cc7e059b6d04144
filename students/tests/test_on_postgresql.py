"""Run this whole Django suite again with PostgreSQL (a real server from tests/servers.py) as the
database, so every test above, the lock and the process-level exit codes included, also holds on
PostgreSQL. One `pytest` command thus covers SQLite and PostgreSQL."""
import os
import subprocess
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).relative_to(REPO_DIR).as_posix()


def test_the_django_suite_passes_on_postgresql(postgres_server):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "students/tests", "-q", "-p", "no:cacheprovider",
         "--deselect", THIS_FILE],
        cwd=REPO_DIR, env={**os.environ, "DATABASE_URL": postgres_server},
        capture_output=True, text=True, timeout=1800,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"PostgreSQL run: {summary}")
    assert result.returncode == 0, f"the suite failed on PostgreSQL:\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert " passed" in summary and "failed" not in summary
