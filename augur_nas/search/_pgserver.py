"""A throw-away PostgreSQL server for tests and benchmarks of distributed searches.

``with TempPostgres() as url:`` runs ``initdb`` in a temporary folder and ``pg_ctl start`` on a
free loopback port (trust authentication, fsync off), yields a ``postgresql://`` URL and stops
and removes the server afterwards. PostgreSQL refuses to run as root: as root the server runs as
the ``postgres`` user (through ``runuser`` or ``su``). ``find_postgres()`` says why it cannot
run (no initdb/pg_ctl, no psycopg2, no non-root user) or returns the bin folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile

from .._imports import available


def _bin_dir():
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[4].split(".")])
    if cands:
        return os.path.dirname(cands[-1])
    w = shutil.which("initdb")
    if w and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(w))
    return None


def find_postgres():
    """``(bin folder, None)`` or ``(None, reason it cannot run here)``."""
    b = _bin_dir()
    if b is None or not os.path.exists(os.path.join(b, "pg_ctl")):
        return None, "PostgreSQL is not installed (no initdb/pg_ctl; run .ci/postgres.sh)"
    if not available("psycopg2"):
        return None, "the psycopg2 driver is not installed (pip install psycopg2-binary; run .ci/postgres.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no 'postgres' user to run the server as"
        if not (shutil.which("runuser") or shutil.which("su")):
            return None, "running as root without runuser/su to run the server as 'postgres'"
    return b, None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    def __init__(self, user: str = "augur", db: str = "augur"):
        self.user, self.db = user, db
        self.dir = None
        self.url = None

    def _run(self, args, check=True, timeout=120):
        if os.geteuid() == 0:
            cmd = " ".join(_q(a) for a in args)
            if shutil.which("runuser"):
                args = ["runuser", "-u", "postgres", "--", *args]
            else:
                args = ["su", "postgres", "-s", "/bin/sh", "-c", cmd]
        return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)

    def start(self) -> str:
        b, why = find_postgres()
        if b is None:
            raise RuntimeError(why)
        self.dir = tempfile.mkdtemp(prefix="augur-pg-")
        os.chmod(self.dir, 0o755)
        data = os.path.join(self.dir, "data")
        sock = os.path.join(self.dir, "sock")
        os.makedirs(sock)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(sock, pw.pw_uid, pw.pw_gid)
        port = free_port()
        try:
            self._run([os.path.join(b, "initdb"), "-D", data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                       "--no-sync"])
            opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                    f"-c full_page_writes=off -c max_connections=200")
            self._run([os.path.join(b, "pg_ctl"), "-D", data, "-o", opts, "-l", os.path.join(self.dir, "server.log"),
                       "-w", "-t", "60", "start"])
            self._run([os.path.join(b, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", self.user, self.db])
        except subprocess.CalledProcessError as exc:
            log = ""
            try:
                with open(os.path.join(self.dir, "server.log")) as f:
                    log = f.read()[-2000:]
            except OSError:
                pass
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{log}") from exc
        self.bin, self.data, self.port = b, data, port
        self.url = f"postgresql://{self.user}@127.0.0.1:{port}/{self.db}"
        return self.url

    def stop(self) -> None:
        if self.dir is None:
            return
        data = os.path.join(self.dir, "data")
        b = _bin_dir()
        if b and os.path.exists(os.path.join(data, "postmaster.pid")):
            try:
                self._run([os.path.join(b, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], check=False,
                          timeout=60)
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _q(s: str) -> str:
    return shlex.quote(s)
