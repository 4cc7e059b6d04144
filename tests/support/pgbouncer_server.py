"""A throw-away PgBouncer (Debian's `pgbouncer` package) in front of a PostgreSQL server, for tests.

    with postgres() as server_url, pgbouncer(server_url, pool_mode="transaction") as url: ...

`url` is server_url with PgBouncer's host and port: the same user and database, pooled. Trust
auth (the user only has to be listed), a pool of 2 server connections so clients really share
them, and PgBouncer's default reset (DISCARD ALL) in session pooling. PgBouncer refuses to run
as root, so as root it runs as the `postgres` OS user, like tests/support/servers.py's PostgreSQL.
"""
import contextlib
import os
import shutil
import subprocess
import tempfile
from urllib.parse import urlsplit

from tests.support.servers import as_postgres, wait_for_port, free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@contextlib.contextmanager
def pgbouncer(server_url, pool_mode="transaction"):
    if not os.path.exists(PGBOUNCER):
        raise RuntimeError(f"{PGBOUNCER} not found: install Debian's pgbouncer package")
    server = urlsplit(server_url)
    folder = tempfile.mkdtemp(prefix="nightly-logout-pgbouncer-")
    port = free_port()
    log = os.path.join(folder, "pgbouncer.log")
    config = os.path.join(folder, "pgbouncer.ini")
    with open(os.path.join(folder, "users.txt"), "w") as users:
        users.write(f'"{server.username}" ""\n')
    with open(config, "w") as ini:
        ini.write(f"""[databases]
* = host={server.hostname} port={server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = {pool_mode}
default_pool_size = 2
max_client_conn = 50
ignore_startup_parameters = extra_float_digits
logfile = {log}
""")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        for name in os.listdir(folder):
            shutil.chown(os.path.join(folder, name), "postgres", "postgres")
    process = subprocess.Popen(as_postgres([PGBOUNCER, config]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process, "pgbouncer", log)
        yield server._replace(netloc=f"{server.username}@127.0.0.1:{port}").geturl()
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
