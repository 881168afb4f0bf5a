"""Helpers shared by the benchmarks: a bench database (created, dropped, filled by psql), its environment,
Django set up in the bench process, gunicorn and Celery worker processes, and the LLMBar pairs as a judged
project."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LLMBAR = REPO.parent / "shared" / "data" / "llmbar"


def bench_env(
    database_url: str, broker_url: str | None = None, runs_dir: Path | None = None, **extra: str
) -> dict[str, str]:
    """The environment of the bench process (set in os.environ) and of the processes it starts. Without
    a broker, no REDIS_URL either: the settings then use the local-memory cache."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-" + "x" * 40),
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LOG_LEVEL": "WARNING",
    }
    if broker_url:
        env |= {"REDIS_URL": broker_url, "CELERY_BROKER_URL": broker_url}
    if runs_dir:
        env["PAIRWISE_RUNS_DIR"] = str(runs_dir)
    env |= extra
    os.environ.update(env)
    # A SIGTERM runs the context managers' cleanup (the server and worker processes) like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return env


def add_database_options(parser: argparse.ArgumentParser, default: str) -> None:
    """--db (dropped and recreated by the run), --pg-host, --pg-port, --pg-user."""
    parser.add_argument("--db", default=default)
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")


def database_url(args: argparse.Namespace) -> str:
    return f"postgres://{args.pg_user}@{args.pg_host}:{args.pg_port}/{args.db}"


def drop_database(args: argparse.Namespace, *, create: bool = False) -> None:
    """Drop the bench database (a name starting with pairwise_bench only), and create it anew if asked."""
    import psycopg

    if not args.db.startswith("pairwise_bench"):
        raise SystemExit(
            f"--db {args.db!r}: a bench creates and drops its database, so its name must start with "
            "pairwise_bench (no other database is ever dropped); nothing was done."
        )
    with psycopg.connect(
        host=args.pg_host, port=args.pg_port, user=args.pg_user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{args.db}"')


def recreate_database(args: argparse.Namespace) -> None:
    drop_database(args, create=True)


def timed(function, *args, **kwargs):  # type: ignore[no-untyped-def]
    """function(*args, **kwargs) and the seconds it took."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def psql(args: argparse.Namespace, sql: str, *, output: int | None = None) -> str:
    """Runs sql in the bench database; its output as text, or written to the file descriptor output."""
    result = subprocess.run(
        ["psql", "-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user, "-d", args.db, "-v",
         "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql],
        stdout=output if output is not None else subprocess.PIPE,
        text=output is None,
        check=True,
    )  # fmt: skip
    return result.stdout if output is None else ""


def first_ids(args: argparse.Namespace, project: int) -> tuple[int, int]:
    """The project's first pair and first rater. Rows one statement inserted have consecutive ids, so a
    fill can name them by arithmetic instead of a join (which the planner, with no statistics yet, would
    nest)."""
    sql = (
        f"SELECT (SELECT min(id) FROM annotation_pair WHERE project_id = {project}), "
        f"(SELECT min(id) FROM annotation_rater WHERE imported_into_id = {project})"
    )
    pair, rater = psql(args, sql).strip().split("|")
    return int(pair), int(rater)


def setup_django() -> None:
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def llmbar_items(limit: int | None = None) -> list[dict[str, Any]]:
    """LLMBar pairs as pair-import items; the better output is always response A's or B's by turns."""
    items = []
    for path in sorted(LLMBAR.glob("*.json")):
        for index, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            if not row["input"].strip() or row["output_1"] == row["output_2"]:
                continue  # what pair import refuses: nothing to prefer, or no prompt
            items.append(
                {
                    "external_id": f"{path.stem}/{index}",
                    "prompt": row["input"],
                    "response_a": row["output_1"],
                    "response_b": row["output_2"],
                    "better": "a" if row["label"] == 1 else "b",
                }
            )
    return items[:limit]


def judged_project(slug: str, items: list[dict[str, Any]], raters: int = 3) -> Any:
    """A project with the pairs and `raters` imported judgments each: all but the last rater choose the
    better response, the last one the better one on two pairs in three (split votes, as people give)."""
    from annotation import services
    from annotation.models import Project

    project = Project.objects.create(slug=slug, name=slug, judgments_per_pair=raters)
    services.pairs_import(
        project=project, items=[{k: v for k, v in i.items() if k != "better"} for i in items]
    )
    judgments = []
    for n, item in enumerate(items):
        worse = "b" if item["better"] == "a" else "a"
        for r in range(raters):
            choice = worse if r == raters - 1 and n % 3 == 0 else item["better"]
            judgments.append({"pair": item["external_id"], "rater": f"bench-{r}", "choice": choice})
    for start in range(0, len(judgments), 10_000):
        services.judgments_import(project=project, items=judgments[start : start + 10_000])
    return project


def staff_token() -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user(
        f"bench-admin-{secrets.token_hex(4)}", password=secrets.token_urlsafe(16), is_staff=True
    )
    return Token.objects.create(user=user).key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *options: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """gunicorn serving config.wsgi on a free port of 127.0.0.1, once it answers /healthz: (port, master)."""
    port = free_port()
    command = [
        PYTHON, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--timeout", "600", "--log-level", "warning", "--chdir", str(REPO), *options,
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"gunicorn exited with {server.returncode}") from None
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not answer within 60 s") from None
                time.sleep(0.2)
        yield port, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextlib.contextmanager
def celery_worker(env: dict[str, str], queues: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [PYTHON, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", queues,
               "--loglevel", "INFO", "--without-gossip", "--without-mingle"]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {log}")
            time.sleep(0.2)
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()


def post_json(port: int, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    response = conn.getresponse()
    data = json.loads(response.read() or b"null")
    conn.close()
    return response.status, data


def shipped_gunicorn_options() -> list[str]:
    """What scripts/start gives gunicorn besides the address: config/gunicorn.py and its 3 workers (its
    WEB_WORKERS default)."""
    return ["-c", str(REPO / "config" / "gunicorn.py"), "--workers", "3"]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL's programs refuse to run as root: as root, run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresCluster:
    """A PostgreSQL cluster of the bench's own (initdb into a folder, trust for local users) on a free port
    of 127.0.0.1, started and stopped with pg_ctl."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def _pg_ctl(self, *arguments: str) -> int:
        command = _as_postgres(["pg_ctl", "-D", str(self.data), *arguments])
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

    def initdb(self) -> None:
        command = ["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                   "-E", "UTF8"]  # fmt: skip
        subprocess.run(_as_postgres(command), check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        if self._pg_ctl("start", "-w", "-t", "120", "-l", str(self.log), "-o", options) != 0:
            raise SystemExit(f"PostgreSQL did not start; see {self.log}")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m mode: smart, fast, or immediate (no checkpoint: crash recovery when it starts)."""
        self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def running(self) -> bool:
        return self._pg_ctl("status") == 0

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


@contextlib.contextmanager
def postgres_cluster(directory: Path) -> Iterator[PostgresCluster]:
    """A new cluster in directory/postgres, running; stopped (immediately) at the end whatever happened.
    As root, the folder is given to the postgres user and `directory` opened for it to pass through."""
    home = directory / "postgres"
    home.mkdir()
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        directory.chmod(0o711)
    cluster = PostgresCluster(home)
    cluster.initdb()
    try:
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")


class RedisServer:
    """A redis-server of the bench's own on a free port of 127.0.0.1: without persistence (nothing survives
    a restart), or with an append-only file (`appendfsync everysec`, as a production setting would)."""

    def __init__(self, directory: Path, *, aof: bool = False) -> None:
        self.directory, self.aof, self.port = directory, aof, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import redis

        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec",
            "--logfile", str(self.directory / "redis.log"), "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"redis-server did not start; see {self.directory / 'redis.log'}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: redis-server's own shutdown (it writes the append-only file, when it has one)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def redis_server(directory: Path, *, aof: bool = False) -> Iterator[RedisServer]:
    """A redis-server in directory/redis, running; stopped at the end whatever happened."""
    home = directory / "redis"
    home.mkdir()
    server = RedisServer(home, aof=aof)
    try:
        server.start()
        yield server
    finally:
        server.stop()
