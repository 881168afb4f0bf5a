"""Load benchmark of the rating API (next -> judgment) against the stack's floor, on this machine.

One run: recreate a PostgreSQL database, migrate, seed a project (judgments_per_pair=3) with pairs and R
raters with tokens; serve the product under gunicorn and let R simulated raters loop next -> judgment for
a fixed time; then serve a bare one-INSERT Django view (floor_urls.py) under the same gunicorn settings to
the same number of clients; report both, their ratio, and the engine's invariants checked in the database.

All traffic goes to 127.0.0.1. The load generator runs on the same machine as gunicorn and PostgreSQL and
competes with them for the CPUs; RESULTS.md says how many there were.

    .venv/bin/python bench/annotation_load/run.py [--raters 50] [--duration 20] [--workers 4]
        [--worker-class gthread --threads 4] [--pairs 6000] [--results bench/annotation_load/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
QUOTA = 3


@dataclass
class Sample:
    op: str
    status: int
    started: float
    seconds: float


@dataclass
class Phase:
    """What one load phase saw, counted over the measured window only (after the warm-up)."""

    name: str
    duration: float
    samples: list[Sample] = field(default_factory=list)
    exhausted_clients: int = 0

    def ops(self, op: str) -> list[Sample]:
        return [s for s in self.samples if s.op == op]

    def rate(self, op: str | None = None, status: int | None = None) -> float:
        chosen = [
            s for s in self.samples if (op is None or s.op == op) and (status is None or s.status == status)
        ]
        return len(chosen) / self.duration

    def percentile_ms(self, op: str, q: float) -> float:
        times = sorted(s.seconds for s in self.ops(op))
        if not times:
            return float("nan")
        return times[min(len(times) - 1, int(q * len(times)))] * 1000

    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.samples:
            if s.status >= 400 or s.status == 0:
                key = f"{s.op} {s.status or 'connection error'}"
                counts[key] = counts.get(key, 0) + 1
        return counts


# The database


def bench_env(args: argparse.Namespace, settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{args.pg_user}@{args.pg_host}:{args.pg_port}/{args.db}",
        "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
        "SECRET_KEY": "benchmark-only-not-a-secret",
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": settings,
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "ERROR",
    }


def recreate_database(args: argparse.Namespace) -> None:
    import psycopg

    if not args.db.startswith("pairwise_bench"):
        raise SystemExit(f"Refusing to drop {args.db!r}: a bench database's name starts with pairwise_bench.")
    with psycopg.connect(
        host=args.pg_host, port=args.pg_port, user=args.pg_user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db}"')


def seed(args: argparse.Namespace) -> list[str]:
    """The project, its pairs and its raters (with tokens), through the product's own services."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotation import services
    from bench.annotation_load.floor_urls import FLOOR_TABLE_SQL

    project = services.project_create(slug="bench", name="Bench", judgments_per_pair=QUOTA)
    rng = random.Random(0)
    words = ["the", "a", "model", "answer", "because", "however", "therefore", "clearly", "step", "then"]
    items = [
        {
            "external_id": f"b{i}",
            "prompt": f"Question {i}: " + " ".join(rng.choices(words, k=30)),
            "response_a": "A: " + " ".join(rng.choices(words, k=120)),
            "response_b": "B: " + " ".join(rng.choices(words, k=120)),
        }
        for i in range(args.pairs)
    ]
    services.pairs_import(project=project, items=items)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"rater{i:03d}", password=make_password(None)) for i in range(args.raters)
    )
    services.project_raters_add(project=project, usernames=[u.username for u in users])
    tokens = [Token.objects.create(user=user).key for user in users]
    with connection.cursor() as cursor:
        cursor.execute(FLOOR_TABLE_SQL)
        # Planner statistics, as autovacuum would have them on a database in use.
        cursor.execute("ANALYZE")
    connection.close()
    return tokens


def check_invariants() -> list[str]:
    """Every violation of the engine's guarantees in the database, as lines; empty when there are none."""
    from django.db import connection

    checks = {
        f"pair with more than {QUOTA} judgments": f"""
            SELECT pair_id, count(*) FROM annotation_judgment GROUP BY pair_id HAVING count(*) > {QUOTA}""",
        "rater judged a pair twice": """
            SELECT pair_id, rater_id, count(*) FROM annotation_judgment
            GROUP BY pair_id, rater_id HAVING count(*) > 1""",
        "rater served a pair twice": """
            SELECT pair_id, rater_id, count(*) FROM annotation_assignment
            GROUP BY pair_id, rater_id HAVING count(*) > 1""",
        "judgment without a matching judged assignment": """
            SELECT j.id FROM annotation_judgment j
            LEFT JOIN annotation_assignment a ON a.id = j.assignment_id
            WHERE a.id IS NULL OR a.status <> 'judged' OR a.pair_id <> j.pair_id OR a.rater_id <> j.rater_id
               OR a.shown_left <> j.shown_left""",
        "judged assignment without a judgment": """
            SELECT a.id FROM annotation_assignment a
            LEFT JOIN annotation_judgment j ON j.assignment_id = a.id
            WHERE a.status = 'judged' AND j.id IS NULL""",
        "pair's judgment_count differs from its judgments": """
            SELECT p.id, p.judgment_count, count(j.id) FROM annotation_pair p
            LEFT JOIN annotation_judgment j ON j.pair_id = p.id
            GROUP BY p.id HAVING p.judgment_count <> count(j.id)""",
        "rater holding more than one open assignment": """
            SELECT rater_id, count(*) FROM annotation_assignment WHERE status = 'active'
            GROUP BY rater_id, project_id HAVING count(*) > 1""",
        f"pair with more than {QUOTA} places taken (judged + held)": f"""
            SELECT pair_id, count(*) FROM annotation_assignment
            WHERE status = 'judged' OR (status = 'active' AND lease_expires_at > now())
            GROUP BY pair_id HAVING count(*) > {QUOTA}""",
    }
    violations = []
    with connection.cursor() as cursor:
        for name, sql in checks.items():
            cursor.execute(sql)
            violations.extend(f"{name}: {row}" for row in cursor.fetchall())
    return violations


def database_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM annotation_judgment), (SELECT count(*) FROM annotation_assignment),"
            " (SELECT count(*) FROM bench_floor)"
        )
        judgments, assignments, floor_rows = cursor.fetchone()
    return {"judgments": judgments, "assignments": assignments, "floor_rows": floor_rows}


# The server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(args: argparse.Namespace, settings: str) -> Iterator[int]:
    port = free_port()
    command = [
        PYTHON, "-m", "gunicorn", "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers),
        "--worker-class", args.worker_class,
        "--threads", str(args.threads),
        "--backlog", "2048",
        "--keep-alive", "5",
        "--log-level", "warning",
        "--chdir", str(REPO),
    ]  # fmt: skip
    server = subprocess.Popen(command, env=bench_env(args, settings), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited with {server.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not answer within 60 s") from None
                time.sleep(0.2)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# The clients


class Client:
    """One keep-alive HTTP connection to 127.0.0.1, reopened when the server closes it."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json", **headers}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = json.dumps(body or {})
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=payload, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status, json.loads(data) if data else None
            except (http.client.HTTPException, ConnectionError):
                # A keep-alive connection the server closed between requests; the request never arrived.
                self.conn.close()
                if attempt == 2:
                    return 0, None
        raise AssertionError("unreachable")


Loop = Callable[[int, Callable[[], bool], list], bool]


def run_clients(name: str, count: int, warmup: float, duration: float, loop: Loop) -> Phase:
    """Start `count` clients together; each runs loop(index, keep_going, samples) until the time is up.

    loop returns False when its client ran out of work. Samples started in the warm-up are dropped.
    """
    start = threading.Barrier(count + 1)
    per_client: list[list[Sample]] = [[] for _ in range(count)]
    ran_out = [False] * count
    deadline = [0.0]

    def keep_going() -> bool:
        return time.perf_counter() < deadline[0]

    def body(index: int) -> None:
        start.wait()
        ran_out[index] = not loop(index, keep_going, per_client[index])

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    deadline[0] = begin + warmup + duration
    start.wait()
    for thread in threads:
        thread.join(timeout=warmup + duration + 120)
    measured_from = begin + warmup
    measured_to = begin + warmup + duration
    samples = [
        sample
        for samples in per_client
        for sample in samples
        if measured_from <= sample.started and sample.started + sample.seconds <= measured_to
    ]
    return Phase(name=name, duration=duration, samples=samples, exhausted_clients=sum(ran_out))


def timed(samples: list, op: str, call: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
    started = time.perf_counter()
    status, body = call()
    samples.append(Sample(op=op, status=status, started=started, seconds=time.perf_counter() - started))
    return status, body


def rater_loop(port: int, tokens: list[str]) -> Loop:
    def loop(index: int, keep_going: Callable[[], bool], samples: list) -> bool:
        client = Client(port, {"Authorization": f"Token {tokens[index]}"})
        rng = random.Random(index)
        while keep_going():
            status, served = timed(samples, "next", lambda: client.post("/api/v1/projects/bench/next/"))
            if status == 204:
                return False
            if status != 200:
                continue
            path = f"/api/v1/assignments/{served['assignment']}/judgment/"
            body = {"choice": rng.choice(["left", "right", "tie"]), "client_time_ms": rng.randint(1000, 9000)}
            timed(samples, "judgment", lambda path=path, body=body: client.post(path, body))
        return True

    return loop


def floor_loop(port: int) -> Loop:
    def loop(index: int, keep_going: Callable[[], bool], samples: list) -> bool:
        client = Client(port, {})
        while keep_going():
            timed(samples, "insert", lambda: client.post("/floor/", {"client": index}))
        return True

    return loop


# The report


def report(args: argparse.Namespace, api: Phase, floor: Phase, violations: list[str], counts: dict) -> str:
    judgments_per_s = api.rate("judgment", 201)
    api_requests_per_s = api.rate()
    floor_per_s = floor.rate("insert", 201)
    config = (
        f"{args.workers} workers, worker class {args.worker_class}"
        + (f", {args.threads} threads each" if args.worker_class == "gthread" else "")
        + f", CONN_MAX_AGE={args.conn_max_age}"
    )
    lines = [
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}; gunicorn, PostgreSQL and the load generator share them.",
        f"Server: gunicorn, {config}. Clients: {args.raters} concurrent, each its own keep-alive connection.",
        f"Data: {args.pairs} pairs, judgments_per_pair={QUOTA}. Measured {args.duration:.0f} s after "
        f"{args.warmup:.0f} s of warm-up, per phase.",
        "",
        "| | requests/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| API `next` (200) | {api.rate('next'):.1f} | {api.percentile_ms('next', 0.5):.1f} "
        f"| {api.percentile_ms('next', 0.99):.1f} |",
        f"| API `judgment` (201) | {api.rate('judgment'):.1f} | {api.percentile_ms('judgment', 0.5):.1f} "
        f"| {api.percentile_ms('judgment', 0.99):.1f} |",
        f"| Floor: bare view, one INSERT | {floor.rate():.1f} | {floor.percentile_ms('insert', 0.5):.1f} "
        f"| {floor.percentile_ms('insert', 0.99):.1f} |",
        "",
        f"- Judgments recorded: **{judgments_per_s:.1f}/s**; floor: **{floor_per_s:.1f} inserts/s**.",
        f"- Judgments/s ÷ floor inserts/s = **{judgments_per_s / floor_per_s:.1%}** "
        "(a judgment takes two requests, next and judgment, so this is at most about half the next line).",
        f"- API requests/s ÷ floor requests/s = **{api_requests_per_s / floor.rate():.1%}** "
        f"({api_requests_per_s:.1f} ÷ {floor.rate():.1f}).",
        f"- Errors: API {api.errors() or 'none'}; floor {floor.errors() or 'none'}. "
        f"Raters who ran out of pairs: {api.exhausted_clients}.",
        f"- In the database after the run: {counts['judgments']} judgments, "
        f"{counts['assignments']} assignments, {counts['floor_rows']} floor rows.",
        f"- Invariant violations: **{len(violations)}**"
        + ("" if not violations else "\n" + "\n".join(f"  - {v}" for v in violations[:50])),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds measured, per phase.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of load before measuring.")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="Threads per worker (gthread).")
    parser.add_argument("--conn-max-age", type=int, default=60)
    parser.add_argument("--db", default="pairwise_bench")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", default="5432")
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--results", type=Path, help="Append the report to this Markdown file.")
    args = parser.parse_args()

    recreate_database(args)
    env = bench_env(args, "config.settings")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    tokens = seed(args)
    print(f"Seeded {args.pairs} pairs and {args.raters} raters in {args.db}.", flush=True)

    with gunicorn(args, "config.settings") as port:
        api = run_clients("api", args.raters, args.warmup, args.duration, rater_loop(port, tokens))
    print(f"API phase: {len(api.samples)} requests measured.", flush=True)
    with gunicorn(args, "bench.annotation_load.floor_settings") as port:
        floor = run_clients("floor", args.raters, args.warmup, args.duration, floor_loop(port))
    print(f"Floor phase: {len(floor.samples)} requests measured.", flush=True)

    text = report(args, api, floor, check_invariants(), database_counts())
    command = "    .venv/bin/python bench/annotation_load/run.py " + " ".join(sys.argv[1:])
    print(text)
    if args.results:
        with args.results.open("a") as out:
            out.write(
                f"\n### {time.strftime('%Y-%m-%d %H:%M')}: {args.worker_class}, {args.workers} workers\n\n"
            )
            out.write(f"{command}\n\n{text}\n")


if __name__ == "__main__":
    main()
