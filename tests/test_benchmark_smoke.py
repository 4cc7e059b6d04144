"""SMOKE TEST of the benchmark script, not a benchmark: N=1000, no timing is asserted.

It checks that benchmarks/bench_logout.py still runs end to end and that, on its realistic fill,
logout_all_users leaves no session (and, with cached_db on Redis, no cache key) behind, and that
--keep-staff keeps exactly the live staff sessions. The figures themselves live in docs/benchmarks.md.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("backend", ["sqlite", "cached_db-redis"])
def test_bench_logout_smoke(backend, tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_logout.py"), "--backend", backend, "-n", "1000",
         "--runs", "1", "--per-session-limit", "50", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    results, live_staff = figures["results"], figures["counts"]["staff"]
    assert live_staff > 0  # the mix has staff sessions, so --keep-staff is really exercised
    assert results["ours"]["left"] == 0
    assert results["ours_keep_staff"]["left"] == live_staff
    assert results["naive"]["left"] == 0
    if backend == "cached_db-redis":
        assert results["floor"]["keys_left"] > 0  # the fill really cached sessions in Redis
        assert results["ours"]["keys_left"] == 0
        assert results["ours_keep_staff"]["keys_left"] <= live_staff
