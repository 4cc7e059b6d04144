"""The report: the machine and versions a run saw, each script's table of figures (bench_logout's next
to their floor and peers, bench_curve's per engine and size, bench_site_up's latency per phase,
bench_login_index's against its target), and the writer that puts a table between its markers in
docs/benchmarks.md.
"""
import datetime as dt
import os
import platform
import statistics
from pathlib import Path

from benchmarks.approaches import APPROACHES


def versions(cache_url):
    import sqlite3

    import django

    info = {"Python": platform.python_version(), "Django": django.get_version(),
            "SQLite": sqlite3.sqlite_version}
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            info["PostgreSQL"] = cur.fetchone()[0]
    if cache_url.startswith("redis"):
        import redis

        info["Redis"] = redis.Redis.from_url(cache_url).info()["redis_version"]
    return info


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, load average {load} at the end of the run")


def run_header(versions_info):
    return (f"Run {dt.datetime.now().astimezone().isoformat(timespec='seconds')} on {machine()}; "
            + ", ".join(f"{k} {v}" for k, v in versions_info.items()) + ".")


WHERE = {
    "sqlite": "in SQLite's django_session",
    "postgres": "in PostgreSQL's django_session",
    "cached_db-redis": "in PostgreSQL's django_session; the {live:,} live ones also in Redis, as cached_db leaves them",
    "cache-redis": "in Redis (cache engine, no expired ones: Redis drops a key when its TTL runs out), each "
                   "with the TTL its last save gave it; users and run records in SQLite",
    "file": "as files in a folder of their own, each with its last save as modification time; users and "
            "run records in SQLite",
}


def render(args, fill, results, versions_info, command):
    floor = results.get("floor", {}).get("median")
    mix = (f"N = {args.n:,} sessions: " + ", ".join(f"{v:,} {k}" for k, v in fill.counts.items())
           + ", " + WHERE[args.backend].format(live=len(fill.live_rows)))
    planted = next(iter(results.values()))["unrelated_planted"] if results else 0
    lines = [
        run_header(versions_info),
        "",
        mix + ".",
        "",
        "| approach | wall time (median) | runs | x floor | µs/session | peak RSS | sessions left | cache keys left | index rows left | unrelated kept |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in APPROACHES:
        r = results.get(name)
        if not r:
            continue
        secs = f"{r['median']:.3f} s" + (" *" if r.get("extrapolated") else "")
        ratio = f"{r['median'] / floor:.2f}x" if floor else "-"
        left = "-" if r.get("extrapolated") else f"{r['left']:,}" + ("" if r["ok"] else " WRONG")
        keys = "-" if r["keys_left"] is None or r.get("extrapolated") else f"{r['keys_left']:,}"
        kept = f"{planted - r['unrelated_missing']}/{planted}" if planted else "-"
        rows = "-" if r.get("rows_left") is None or r.get("extrapolated") else f"{r['rows_left']:,}"
        lines.append(f"| {name} | {secs} | {len(r['times'])} | {ratio} | {r['median'] / args.n * 1e6:.2f} "
                     f"| {r['rss_mb']:.0f} MB | {left} | {keys} | {rows} | {kept} |")
    if any(r.get("extrapolated") for r in results.values()):
        r = results["per_session"]
        lines += ["", f"\\* per_session ran on the first {r['processed']:,} sessions "
                      f"({r['sample_seconds']:.1f} s) and its time is scaled to N."]
    if "ours_zone_hour" in results and "floor_zone_keys" in results:
        hour, keys_floor = results["ours_zone_hour"]["median"], results["floor_zone_keys"]["median"]
        lines += ["", f"ours_zone_hour is {hour / keys_floor:.2f}x floor_zone_keys (deleting exactly its sessions "
                      f"by key)" + (f" and {hour / floor:.2f}x the full purge's floor." if floor else ".")]
    wrong = [f"{name}: {'; '.join(r['wrong'])}" for name, r in results.items() if r["wrong"]]
    if wrong:
        lines += ["", "WRONG results: " + " / ".join(wrong)]
    lines += ["", "Reproduce:", "", "```", command, "```"]
    return "\n".join(lines)


def write_doc(path, section, text):
    """Replace this section (between its markers) in the doc, keeping everything else."""
    path = Path(path)
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    doc = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += f"\n## {section}\n\n{block}\n"
    path.write_text(doc)


# bench_curve's table: one row per engine and size
ENGINE_NAMES = {"sqlite": "db on SQLite", "postgres": "db on PostgreSQL",
                "cached_db-redis": "cached_db on PostgreSQL + Redis", "cache-redis": "cache on Redis",
                "file": "file"}


def render_curve(figures, command, runs):
    seen = {}  # every version any run saw
    for f in figures:
        seen.update(f["versions"])
    lines = [
        run_header(seen),
        "",
        f"Each engine's floor (see the approaches above) and `logout_all_users`, median of {runs} run(s) "
        "each, on a fresh fill of N sessions in the mix above (the cache engine: live ones only).",
        "",
        "| engine | N | floor | ours | x floor | floor µs/session | ours µs/session | sessions left (ours) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        floor, ours = f["results"]["floor"], f["results"]["ours"]
        left = f"{ours['left']:,}" + ("" if ours["ok"] and floor["ok"] else " WRONG")
        lines.append(
            f"| {ENGINE_NAMES[f['backend']]} | {f['n']:,} | {floor['median']:.3f} s | {ours['median']:.3f} s "
            f"| {ours['median'] / floor['median']:.2f}x | {floor['median'] / f['n'] * 1e6:.2f} "
            f"| {ours['median'] / f['n'] * 1e6:.2f} | {left} |")
    lines += ["", "Reproduce:", "", "```", command, "```"]
    return "\n".join(lines)


# bench_site_up's tables: latency per kind of request, in each phase
def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summarise(rows, label):
    lines = []
    for kind in ["all requests", "page view", "login page", "login POST", "logout POST"]:
        sel = [r for r in rows if kind == "all requests" or r[0] == kind]
        if not sel:
            continue
        ms = [(end - start) * 1000 for _, start, end, _ in sel]
        errors = sum(1 for *_, err in sel if err)
        lines.append(f"| {label} | {kind} | {len(sel)} | {percentile(ms, 50):.0f} ms | "
                     f"{percentile(ms, 99):.0f} ms | {max(ms):.0f} ms | {errors} |")
    return lines


def render_site_up(args, command, info, rows, relogins, purge_start, purge_end, purge_output, left, check_ms,
                   hasher):
    idle = [r for r in rows if r[2] <= purge_start]
    during = [r for r in rows if r[1] < purge_end and r[2] > purge_start]
    return "\n".join([
        run_header(info),
        "",
        f"N = {args.n:,} sessions on PostgreSQL, purged by `manage.py logout_all_users` in "
        f"{purge_end - purge_start:.1f} s (process start to exit): "
        + " / ".join(purge_output.strip().splitlines()) + f". Sessions left afterwards: {left:,} "
        f"(logins made during and after the purge). {args.threads} client threads against "
        f"`manage.py runserver --noreload` on loopback, {args.think * 1000:.0f} ms think time, "
        f"{args.views_per_login} page views per login; {len(relogins)} page view(s) found the client logged "
        "out by the purge and it logged in again.",
        "",
        "| phase | requests | count | p50 | p99 | max | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
        *summarise(idle, "idle"),
        *summarise(during, "during purge"),
        "",
        "Errors seen: " + (", ".join(sorted({r[3] for r in rows if r[3]})) or "none") + ".",
        "",
        f"One password check alone, as every login POST makes it ({hasher}): {check_ms:.0f} ms "
        "(median of 5, in the benchmark process after the load stopped).",
        "",
        "Reproduce:", "", "```", command, "```",
    ])


def render_site_schedule(args, command, info, phases, rows, relogins):
    lines = [
        run_header(info),
        "",
        f"N = {args.n:,} sessions on PostgreSQL (db engine, locmem cache), no purge. {args.threads} client "
        f"threads against runserver on loopback, {args.think * 1000:.0f} ms think time, {args.views_per_login} "
        f"page views per login; {args.rounds} rounds of the three phases, {args.phase_seconds:.0f} s each, measured after the site's cached view of "
        f"the schedule had been refreshed. In the last phase the cleanup interval was {args.cleanup_every:g} s "
        "instead of 600 s (each turn deletes up to 2,000 expired or cut-off sessions), so its turns really "
        f"fall inside the measurement; {len(relogins)} page view(s) found the client logged out.",
        "",
        "| phase | requests | count | p50 | p99 | max | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, chosen, _ in phases:
        lines += [line for line in summarise(chosen, label) if "| page view |" in line or "| all requests |" in line]
    lines += ["", *(f"- {label}: {note}" for label, _, note in phases), "",
              "Errors seen: " + (", ".join(sorted({r[3] for r in rows if r[3]})) or "none") + ".",
              "", "Reproduce:", "", "```", command, "```"]
    return "\n".join(lines)


# bench_login_index's figures: a login with the index and without it
LOGIN_TARGET_RATIO = 1.05  # login p50 and p99 with the index within 5% of without


def print_login_figures(label, figures, judged):
    """Print the figures; judged: compare with the target (a real login, the site's hasher), or only
    show the index's share of the rest of a login's work (the fast hasher)."""
    with_ms, without_ms = ([f[0] for f in figures[side]] for side in (True, False))
    index_ms = [f[2] for f in figures[True]]
    queries = {side: statistics.median(f[1] for f in figures[side]) for side in (True, False)}
    ok = True
    print(f"{label}: {len(with_ms)} logins each way")
    for name, q in (("p50", 50), ("p99", 99)):
        a, b, own = percentile(with_ms, q), percentile(without_ms, q), percentile(index_ms, q)
        ratio = a / b
        ok &= ratio <= LOGIN_TARGET_RATIO or not judged
        verdict = (f"(target: at most {LOGIN_TARGET_RATIO:.2f}x) {'OK' if ratio <= LOGIN_TARGET_RATIO else 'MISSED'}"
                   if judged else "(no target: the login without its hasher)")
        print(f"  login {name}: {a:7.1f} ms with the index, {b:7.1f} ms without: {ratio:.3f}x {verdict}; "
              f"the index's own code {own:.2f} ms = {own / b:.1%} of that login without it")
    mean_added = statistics.mean(with_ms) - statistics.mean(without_ms)
    print(f"  mean added per login: {mean_added:+.2f} ms measured, {statistics.mean(index_ms):.2f} ms in the "
          f"index's code; queries per login POST: {queries[True]:.0f} with, {queries[False]:.0f} without")
    return ok
