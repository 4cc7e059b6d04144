"""SMOKE TEST of the benchmark scripts, not a benchmark: small N, no timing is asserted.

It checks that `python -m benchmarks.bench_logout` still runs end to end on every session engine and
that, on its realistic fill, the floor and logout_all_users leave no session (and, with cached_db, no
cache key) behind, that --keep-staff keeps exactly the live staff sessions, that the ownership index
keeps rows of exactly the sessions left, and that the unrelated Redis keys and files planted beside the
sessions survive every approach. The script compares what is left with the fill key by key; here we
read its report. The other scripts run end to end too, each checking its own result. The figures
themselves live in docs/benchmarks.md.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def bench(script, *args, timeout=300):
    """Run benchmarks.<script> as the README says: `python -m`, from the repository root."""
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("backend", ["sqlite", "cached_db-redis", "cache-redis", "file"])
def test_bench_logout_smoke(backend, tmp_path):
    out = tmp_path / "figures.json"
    bench("bench_logout", "--backend", backend, "-n", "1000", "--runs", "1",
          "--per-session-limit", "50", "--json", out)
    figures = json.loads(out.read_text())
    results, live_staff = figures["results"], figures["counts"]["staff"]
    assert live_staff > 0  # the mix has staff sessions, so --keep-staff is really exercised
    for name, r in results.items():
        assert r["wrong"] == [], name
    assert results["floor"]["left"] == 0
    assert results["ours"]["left"] == 0
    assert results["ours_keep_staff"]["left"] == live_staff
    assert results["ours_late"]["left"] <= figures["counts"]["anonymous"]
    # The ownership index follows (issue 22): no row of a deleted session, a row for each kept login.
    assert results["floor"]["rows_left"] == results["ours"]["rows_left"] == 0
    assert results["ours_keep_staff"]["rows_left"] == live_staff
    assert results["ours_zone_hour"]["left"] == results["floor_zone_keys"]["left"] > 0
    assert results["ours_zone_hour"]["rows_left"] == results["floor_zone_keys"]["rows_left"] > 0
    if backend in ("sqlite", "cached_db-redis"):
        assert results["naive"]["left"] == 0
    else:
        assert "naive" not in results and "per_session" not in results  # they need a session table
    if backend == "cached_db-redis":
        assert results["naive"]["keys_left"] > 0  # the fill really cached sessions in Redis
        assert results["floor"]["keys_left"] == 0
        assert results["ours"]["keys_left"] == 0
        assert results["ours_keep_staff"]["keys_left"] <= live_staff
    if backend == "sqlite":
        assert results["ours"]["unrelated_planted"] == 0
    else:  # other tenants of the Redis database, other files in the session folder: all still there
        for name, r in results.items():
            assert r["unrelated_planted"] >= 4 and r["unrelated_missing"] == 0, name


def test_bench_curve_smoke(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("before\n<!-- bench:curve -->\nplaceholder\n<!-- /bench:curve -->\nafter\n")
    bench("bench_curve", "--backends", "sqlite,file", "--sizes", "300,600", "--file-sizes", "200",
          "--runs", "1", "--doc", doc)
    text = doc.read_text()
    assert text.startswith("before\n<!-- bench:curve -->\n") and text.endswith("<!-- /bench:curve -->\nafter\n")
    rows = [line for line in text.splitlines() if line.startswith("| db on SQLite |") or line.startswith("| file |")]
    assert [row.split("|")[2].strip() for row in rows] == ["300", "600", "200"]
    assert all(row.rstrip(" |").endswith("| 0") for row in rows)  # ours left no session at any size


def test_bench_site_up_smoke(tmp_path):
    doc = tmp_path / "benchmarks.md"
    result = bench("bench_site_up", "-n", "1000", "--threads", "1", "--idle-seconds", "3", "--after-seconds", "1",
                   "--doc", doc)
    assert "Sessions left afterwards" in result.stdout
    phases = {line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"idle", "during purge"} <= phases
    assert "Errors seen: none." in result.stdout  # the site answered every request while it purged
    assert "<!-- bench:site-up -->" in doc.read_text()


def test_bench_site_up_schedule_smoke():
    result = bench("bench_site_up", "--schedule", "-n", "500", "--threads", "1", "--phase-seconds", "2",
                   "--rounds", "1", "--cleanup-every", "1")
    phases = ["no schedule", "schedule, cutoff in force", "scheduler none, site cleanup on"]
    # Each phase's note (sessions before -> after) is there whatever traffic a loaded machine let through
    # in a short phase; which phases had a page view end inside them is not (the full suite saw one of three).
    notes = [line.split(":")[0].removeprefix("- ") for line in result.stdout.splitlines() if line.startswith("- ")]
    assert notes == phases
    rows = [line.split("|")[1:3] for line in result.stdout.splitlines() if line.startswith("| ")]
    page_views = {phase.strip() for phase, kind in rows if kind.strip() == "page view"}
    assert page_views and page_views <= set(phases)


def test_bench_login_index_smoke():
    # Only the fast pass: the site's hasher pass judges a 5% target, which a few logins cannot.
    result = bench("bench_login_index", "--logins", "0", "--fast-logins", "5", "--rows", "100")
    assert "fast hasher (MD5) (md5), 100 other rows: 5 logins each way" in result.stdout
    assert "queries per login POST" in result.stdout  # every login was checked: signed in, row iff indexed


def test_bench_logout_user_smoke():
    result = bench("bench_logout_user", "-n", "2000", "--users", "200", "--runs", "1")
    assert "run 1: purge work" in result.stdout
    assert "for 10 session(s) among 2000 (store checked: exactly those gone)" in result.stdout
