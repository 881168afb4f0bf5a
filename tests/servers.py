"""Servers of a test's own, for the tests that break them: gunicorn with config/gunicorn.py on a free port,
a PostgreSQL cluster (initdb into a temporary folder) and a redis-server on others. Each is stopped, by its
own process id, whatever the test did."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Gunicorn:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> list[int]:
        """The master's children (its workers)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path, *options: str, port: int | None = None) -> Iterator[Gunicorn]:
    """gunicorn -c config/gunicorn.py on 127.0.0.1:port (a free one by default), once it listens. Its own
    process group: whatever is left of it at the end (orphaned workers too) is killed with the group."""
    port = port or free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "--bind", f"127.0.0.1:{port}",
        "--log-level", "info", *options,
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Gunicorn(process, port, log)
    try:
        wait_until(
            lambda: (
                f"Listening at: http://127.0.0.1:{port} ({process.pid})" in server.log_text()
                or process.poll() is not None
            ),
            "gunicorn to listen",
        )
        assert process.poll() is None, server.log_text()
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL's programs refuse to run as root: as root, run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresCluster:
    def __init__(self, home: Path) -> None:
        self.home, self.data, self.port = home, home / "data", free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *arguments: str) -> None:
        command = _as_postgres(["pg_ctl", "-D", str(self.data), "-w", "-t", "60", *arguments])
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("start", "-l", str(self.home / "postgres.log"), "-o", options)

    def stop(self) -> None:
        """A fast shutdown: the server ends every session (57P01) and stops listening."""
        self._pg_ctl("stop", "-m", "fast")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A new cluster (trust, no fsync) in a temporary folder of the postgres user's, started; stopped and
    removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="pairwise-test-pg-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(home, user.pw_uid, user.pw_gid)
        data = str(home / "data")
        initdb = ["initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]
        subprocess.run(_as_postgres(initdb), check=True, stdout=subprocess.DEVNULL)
        cluster = PostgresCluster(home)
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster._pg_ctl("stop", "-m", "immediate")
    finally:
        shutil.rmtree(home, ignore_errors=True)


class RedisServer:
    """A redis-server on a free port without persistence, as the campaign's was: a restart loses every
    message on it. Only this process starts and stops it, by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def waiting(self, queue: str = "training") -> int:
        """Messages waiting on the queue."""
        return int(self.client().llen(queue))
