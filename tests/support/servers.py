"""Throw-away PostgreSQL and Redis servers from Debian's binaries, for tests (and benchmarks).

PostgreSQL's server programs are found without naming a version: $PG_BIN if set, else the newest
/usr/lib/postgresql/<version>/bin that has initdb (Debian 12 has 15, Debian 13 has 17).

Each server gets its own temp folder, listens on 127.0.0.1 on a free port, keeps nothing on
disk that outlives it, and is stopped (folder removed) when its `with` block or fixture ends.
PostgreSQL refuses to run as root, so as root its tools run as the `postgres` OS user that
Debian's postgresql package creates.

    with postgres() as url: ...      # postgres://postgres@127.0.0.1:PORT/postgres
    with redis() as url: ...         # redis://127.0.0.1:PORT/0

The pytest fixtures `postgres_server` and `redis_server` (session-scoped) wrap them; the root
conftest.py loads this module as a plugin.
"""
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

DEBIAN_PG_BINS = "/usr/lib/postgresql/*/bin"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def pg_bin():
    """The folder of PostgreSQL's server programs (initdb, pg_ctl): $PG_BIN, else the newest of Debian's."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = [folder for folder in glob.glob(DEBIAN_PG_BINS) if os.path.exists(os.path.join(folder, "initdb"))]
    if not found:
        raise RuntimeError(f"No PostgreSQL server programs in {DEBIAN_PG_BINS}: install Debian's postgresql "
                           "package, or set PG_BIN to the folder that has initdb")
    # The newest major version, compared as numbers (10 > 9.6).
    return max(found, key=lambda folder: [int(part) for part in re.findall(r"\d+", folder)])


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process, name, log_path=None, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process is not None and process.poll() is not None or time.monotonic() > deadline:
                log = open(log_path).read() if log_path and os.path.exists(log_path) else ""
                raise RuntimeError(f"{name} did not start on 127.0.0.1:{port}\n{log}")
            time.sleep(0.05)


def as_postgres(command):
    """`command` run as the postgres OS user when this runs as root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


@contextlib.contextmanager
def postgres(settings=(), database="postgres"):
    """Yield a postgres:// URL (superuser `postgres`, trust auth) to `database` on a fresh cluster.

    settings: extra server settings such as "fsync=off"."""
    bin_dir = pg_bin()
    if not os.path.exists(f"{bin_dir}/initdb"):
        raise RuntimeError(f"PostgreSQL's initdb is not in PG_BIN={bin_dir}")
    folder = tempfile.mkdtemp(prefix="nightly-logout-pg-")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, log = os.path.join(folder, "data"), os.path.join(folder, "server.log")
    port = free_port()
    started = False
    try:
        _run(as_postgres([f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "-A", "trust",
                           "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]))
        options = " ".join([f"-p {port}", f"-k {folder}", "-c listen_addresses=127.0.0.1",
                            *(f"-c {setting}" for setting in settings)])
        _run(as_postgres([f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"]))
        started = True
        if database != "postgres":
            _run(as_postgres([f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database]))
        yield f"postgres://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run(as_postgres([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis():
    """Yield a redis:// URL to a fresh Redis server that persists nothing."""
    folder = tempfile.mkdtemp(prefix="nightly-logout-redis-")
    port = free_port()
    log = os.path.join(folder, "server.log")
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder, "--logfile", log],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "redis-server", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """postgres:// URL of a PostgreSQL server for this test session (database `postgres`)."""
    with postgres(settings=("fsync=off", "full_page_writes=off")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server():
    """redis:// URL of a Redis server for this test session."""
    with redis() as url:
        yield url
